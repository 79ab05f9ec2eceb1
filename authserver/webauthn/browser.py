"""The browser's ceremony cookie, as the views read and set it (Flask glue).

A passkey ceremony completes only in the browser that began it: its pending record holds
the hash of a random cookie of that browser (``service.binding_hash``). The ceremony
services take that hash as an argument, as the login fast path hands it to them; reading
the cookie from the request, making one for a browser that has none and sending it back are
the views' part, here.
"""

from __future__ import annotations

from flask import Response, current_app, g, request

from authserver.webauthn.service import (
    BINDING_COOKIE,
    binding_hash,
    new_binding_token,
    set_binding_cookie_on,
    usable_binding,
)

_NEW = "new_binding_cookie"  # this request's new cookie, sent back after the view


def browser_binding() -> bytes | None:
    """The hash of this browser's ceremony cookie, None when it has none (then no ceremony
    can complete here)."""
    token = usable_binding(request.cookies.get(BINDING_COOKIE))
    return None if token is None else binding_hash(token)


def new_binding() -> bytes:
    """The hash a ceremony begun now is bound to: this browser's cookie, or a new one (sent
    back by ``set_binding_cookie``)."""
    token = usable_binding(request.cookies.get(BINDING_COOKIE))
    if token is None:
        token = g.get(_NEW) or new_binding_token()
        setattr(g, _NEW, token)
    return binding_hash(token)


def set_binding_cookie(response: Response) -> Response:
    """``after_request`` of the passkey blueprints: the cookie made during the request."""
    token = g.get(_NEW)
    if token:
        set_binding_cookie_on(
            response, token, current_app.config["AUTHSERVER"].secure_cookies, request.script_root
        )
    return response
