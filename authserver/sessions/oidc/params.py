"""What an authorization request's parameters may hold. Pure logic, no Flask, no I/O.

RFC 6749 §3.1: no parameter more than once (Authlib checks five of them; a repeated ``nonce``
went through, the first value silently kept). No OAuth or OIDC parameter we accept carries
control characters, and PostgreSQL refuses a NUL: such a request is an ``invalid_request``
rather than a 500. ``nonce`` is stored with the code: no longer than its column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from authserver.jsonapi import FORBIDDEN_CHARACTERS

NONCE_MAX = 255  # OAuthCode.nonce


def authorization_problem(datalist: Mapping[str, Sequence[str]]) -> str | None:
    """Why these parameters (each name with all its values) are refused, or None.

    The answer is an RFC 6749 ``error_description``: it never echoes the request."""
    for name, values in datalist.items():
        if len(values) > 1:
            return "a parameter is given more than once"
        if FORBIDDEN_CHARACTERS.search(name) or any(
            FORBIDDEN_CHARACTERS.search(value) for value in values
        ):
            return "a parameter holds control characters"
    nonce = datalist.get("nonce") or [""]
    if len(nonce[0]) > NONCE_MAX:
        return f"nonce is longer than {NONCE_MAX} characters"
    return None
