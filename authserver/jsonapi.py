"""Reading JSON request bodies strictly: the contract's errors, never a 500."""

from __future__ import annotations

import re
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


# Control characters (C0, DEL, C1) and lone surrogates: JSON can carry them ("\u0000",
# "\ud800"), but a lone surrogate cannot be encoded as UTF-8 and PostgreSQL refuses NUL
# in text: they would reach the database as a 500. No field of ours needs them.
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def optional_str(body: dict[str, Any], key: str, max_length: int) -> str | None:
    """``body[key]``: absent/null, or a string of at most ``max_length`` characters, all
    encodable as UTF-8 and none a control character; 400 ``invalid_field`` otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise APIError(400, "invalid_field", f"Le champ « {key} » doit être une chaîne.")
    if len(value) > max_length:
        raise APIError(400, "invalid_field", f"Le champ « {key} » est trop long.")
    if FORBIDDEN_CHARACTERS.search(value):
        raise APIError(
            400, "invalid_field", f"Le champ « {key} » contient des caractères non autorisés."
        )
    return value
