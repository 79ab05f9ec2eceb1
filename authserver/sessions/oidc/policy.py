"""When must the user authenticate again before a code is issued? Pure logic, no Flask.

``prompt=login`` and ``max_age`` (OIDC Core §3.1.2.1) force a new login; ``acr_values``
naming the passkey level forces a passkey login (step-up). After that login the browser
comes back to the same authorization request: ``prompt=login`` is then replaced by
``login_after=<epoch>`` so that the new login satisfies it instead of looping.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlencode

from authserver.sessions.oidc.claims import requires_passkey

LOGIN_AFTER = "login_after"


class Need(enum.Enum):
    NOTHING = "nothing"
    LOGIN = "login"
    PASSKEY = "passkey"


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def decide(
    *,
    params: Mapping[str, str],
    logged_in: bool,
    authenticated_at: datetime | None,
    method: str | None,
    now: datetime,
) -> Need:
    passkey = requires_passkey(params.get("acr_values"))
    if not logged_in or authenticated_at is None:
        return Need.PASSKEY if passkey else Need.LOGIN
    login_after = _int(params.get(LOGIN_AFTER))
    fresh_since_request = login_after is not None and authenticated_at.timestamp() >= login_after
    prompts = (params.get("prompt") or "").split()
    if "login" in prompts and not fresh_since_request:
        return Need.PASSKEY if passkey else Need.LOGIN
    max_age = _int(params.get("max_age"))
    too_old = max_age is not None and (now - authenticated_at).total_seconds() > max_age
    if too_old and not fresh_since_request:
        return Need.PASSKEY if passkey else Need.LOGIN
    if passkey and method != "passkey":
        return Need.PASSKEY
    return Need.NOTHING


def return_path(path: str, params: Mapping[str, str], now: datetime) -> str:
    """Where the login page sends the browser back: the same request, made satisfiable."""
    kept = [(key, value) for key, value in params.items() if key != LOGIN_AFTER]
    prompts = [p for p in (params.get("prompt") or "").split() if p != "login"]
    kept = [(key, value) for key, value in kept if key != "prompt"]
    if prompts:
        kept.append(("prompt", " ".join(prompts)))
    kept.append((LOGIN_AFTER, str(int(now.timestamp()))))
    return f"{path}?{urlencode(kept)}"
