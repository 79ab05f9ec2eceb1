"""Reading JSON request bodies strictly: the contract's errors, never a 500."""

from __future__ import annotations

from typing import Any

from flask import request

from authserver.errors import APIError


def read_json() -> dict[str, Any]:
    """The body as an object; 415 without ``application/json``, 400 when malformed."""
    if not request.is_json:
        raise APIError(415, "unsupported_media_type", "Le corps de la requête doit être du JSON.")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # silent=True only covers ValueError; "[[[[…" thousands deep
        body = None
    if body is None:
        raise APIError(400, "malformed_json", "Le corps de la requête n'est pas un JSON valide.")
    if not isinstance(body, dict):
        raise APIError(400, "malformed_json", "Le corps de la requête doit être un objet JSON.")
    return body


def optional_str(body: dict[str, Any], key: str, max_length: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise APIError(400, "invalid_field", f"Le champ « {key} » doit être une chaîne.")
    if len(value) > max_length:
        raise APIError(400, "invalid_field", f"Le champ « {key} » est trop long.")
    return value
