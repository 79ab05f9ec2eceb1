"""Reading the parts of a response that py_webauthn does not check for us.

py_webauthn 3 compares the challenge and origin but never looks at
``crossOrigin``/``topOrigin``, and we need the challenge *before* verifying to
find the pending ceremony. No Flask, no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from webauthn.helpers import base64url_to_bytes

from authserver.webauthn.errors import CrossOriginRefused, MalformedCredential, OriginMismatch

MAX_FIELD = 16 * 1024  # base64url characters: far above any real response
# The decoder below silently drops characters outside the alphabet ("***" became b""): check first.
BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64(value: Any, field: str, *, optional: bool = False) -> bytes | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise MalformedCredential(f"{field}: base64url string expected")
    if not BASE64URL.fullmatch(value):
        raise MalformedCredential(f"{field}: not base64url")
    try:
        return base64url_to_bytes(value)
    except (ValueError, TypeError):
        raise MalformedCredential(f"{field}: not base64url") from None


@dataclass(frozen=True)
class ClientData:
    type: str
    challenge: bytes
    origin: str
    cross_origin: bool
    top_origin: str | None


def check_shape(credential: Any, kind: str) -> dict[str, Any]:
    """The JSON form's structure and types, before any library sees it."""
    if not isinstance(credential, dict):
        raise MalformedCredential("credential must be an object")
    response = credential.get("response")
    if not isinstance(response, dict):
        raise MalformedCredential("credential.response must be an object")
    for key in ("id", "rawId"):
        if not isinstance(credential.get(key), str) or not credential[key]:
            raise MalformedCredential(f"credential.{key} missing")
    if credential.get("type") != "public-key":
        raise MalformedCredential("credential.type must be public-key")
    needed = (
        ("clientDataJSON", "attestationObject")
        if kind == "create"
        else ("clientDataJSON", "authenticatorData", "signature")
    )
    for key in needed:
        b64(response.get(key), f"response.{key}")
    if kind == "get":
        b64(response.get("userHandle"), "response.userHandle", optional=True)
    attachment = credential.get("authenticatorAttachment")
    if isinstance(attachment, str) and attachment not in ("platform", "cross-platform"):
        raise MalformedCredential(f"credential.authenticatorAttachment {attachment[:32]!r}")
    if kind == "create":
        transports = response.get("transports", [])
        if not isinstance(transports, list) or not all(
            isinstance(item, str) and len(item) <= 32 for item in transports
        ):
            raise MalformedCredential("response.transports must be a list of strings")
    return credential


def parse_client_data(credential: dict[str, Any], expected_type: str) -> ClientData:
    raw = b64(credential["response"].get("clientDataJSON"), "clientDataJSON")
    try:
        data = json.loads(raw or b"")
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise MalformedCredential("clientDataJSON is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedCredential("clientDataJSON is not an object")
    if data.get("type") != expected_type:
        raise MalformedCredential(
            f"clientDataJSON.type {data.get('type')!r}, expected {expected_type}"
        )
    challenge = b64(data.get("challenge"), "clientDataJSON.challenge")
    origin = data.get("origin")
    if not isinstance(origin, str):
        raise MalformedCredential("clientDataJSON.origin missing")
    top_origin = data.get("topOrigin")
    if top_origin is not None and not isinstance(top_origin, str):
        raise MalformedCredential("clientDataJSON.topOrigin must be a string")
    return ClientData(
        type=expected_type,
        challenge=challenge or b"",
        origin=origin,
        # A boolean in the spec; only false (or absent) is same-origin: "true", 1, null or
        # anything else is refused as cross-origin, never read as false.
        cross_origin=data.get("crossOrigin", False) is not False,
        top_origin=top_origin,
    )


def check_origin(client_data: ClientData, allowed: tuple[str, ...]) -> None:
    """Exact origin match; a ceremony inside a cross-origin frame is refused."""
    if client_data.origin not in allowed:
        raise OriginMismatch(f"origin {client_data.origin!r}, expected one of {allowed}")
    if client_data.cross_origin:
        raise CrossOriginRefused("crossOrigin is true")
    if client_data.top_origin is not None and client_data.top_origin not in allowed:
        raise CrossOriginRefused(f"topOrigin {client_data.top_origin!r}")
