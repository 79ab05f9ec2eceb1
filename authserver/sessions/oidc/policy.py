"""When must the user authenticate again before a code is issued? Pure logic, no Flask.

``prompt=login`` and ``max_age`` (OIDC Core §3.1.2.1) force a new login; ``acr_values``
naming the passkey level forces a passkey login (step-up). Before sending the browser to the
login page we add ``login_after``, a marker signed with the server's key that says « a login
made after this instant, for this very request, satisfies it ». The browser comes back to
the same request, ``prompt`` and ``max_age`` untouched, and the new login satisfies them
instead of looping. The marker cannot be forged (a plain ``login_after=0`` is ignored), nor
moved to another request (it carries a digest of the request's other parameters), and it
lapses after ``MARKER_MAX_AGE``.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadData, URLSafeSerializer

from authserver.sessions.oidc.claims import requires_passkey

LOGIN_AFTER = "login_after"
MARKER_MAX_AGE = 15 * 60  # seconds: time to log in (a password, a passkey) and come back
_SALT = "authserver.oidc.login-after"


class Need(enum.Enum):
    NOTHING = "nothing"
    LOGIN = "login"
    PASSKEY = "passkey"


class InvalidParameter(ValueError):
    """An authorization request parameter is malformed (OAuth ``invalid_request``)."""

    def __init__(self, name: str, value: str) -> None:
        super().__init__(f"{name}: non-negative integer expected, got {value[:20]!r}")
        self.name = name


def max_age_of(params: Mapping[str, str]) -> int | None:
    """``max_age``: absent, or a non-negative integer of seconds; anything else is refused."""
    value = params.get("max_age")
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise InvalidParameter("max_age", value)
    return int(value)


def _request_digest(params: Mapping[str, str]) -> str:
    kept = sorted((key, value) for key, value in params.items() if key != LOGIN_AFTER)
    return hashlib.sha256(urlencode(kept).encode()).hexdigest()[:32]


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_SALT)


def sign_marker(secret_key: str, params: Mapping[str, str], now: datetime) -> str:
    payload = {"t": int(now.timestamp()), "r": _request_digest(params)}
    return str(_serializer(secret_key).dumps(payload))


def read_marker(secret_key: str, params: Mapping[str, str], now: datetime) -> datetime | None:
    """The instant a valid marker of this request names, or None (absent, forged, moved, old)."""
    raw = params.get(LOGIN_AFTER)
    if not raw or len(raw) > 200:
        return None
    try:
        payload: Any = _serializer(secret_key).loads(raw)
    except BadData:
        return None
    if not isinstance(payload, dict) or payload.get("r") != _request_digest(params):
        return None
    moment = payload.get("t")
    if not isinstance(moment, int):
        return None
    age = now.timestamp() - moment
    if age < 0 or age > MARKER_MAX_AGE:
        return None
    return datetime.fromtimestamp(moment, timezone.utc)


def decide(
    *,
    params: Mapping[str, str],
    logged_in: bool,
    authenticated_at: datetime | None,
    method: str | None,
    now: datetime,
    login_after: datetime | None = None,
) -> Need:
    """What the request needs first. ``login_after`` is ``read_marker``'s answer.

    Raises InvalidParameter for a malformed ``max_age``."""
    max_age = max_age_of(params)
    passkey = requires_passkey(params.get("acr_values"))
    if not logged_in or authenticated_at is None:
        return Need.PASSKEY if passkey else Need.LOGIN
    fresh_since_request = login_after is not None and authenticated_at >= login_after
    prompts = (params.get("prompt") or "").split()
    if "login" in prompts and not fresh_since_request:
        return Need.PASSKEY if passkey else Need.LOGIN
    too_old = max_age is not None and (now - authenticated_at).total_seconds() > max_age
    if too_old and not fresh_since_request:
        return Need.PASSKEY if passkey else Need.LOGIN
    if passkey and method != "passkey":
        return Need.PASSKEY
    return Need.NOTHING


def return_path(path: str, params: Mapping[str, str], marker: str) -> str:
    """Where the login page sends the browser back: the same request, with the marker."""
    kept = [(key, value) for key, value in params.items() if key != LOGIN_AFTER]
    kept.append((LOGIN_AFTER, marker))
    return f"{path}?{urlencode(kept)}"
