"""The ``Set-Cookie`` values of the passkey login fast path (fastpath.py), exactly as the
views write them: each is taken from the views' own cookie function once, and only its
value is put in at each login (tests/webauthn/test_fastpath.py compares both answers)."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from werkzeug.wrappers import Response

from authserver.alerts import devices
from authserver.sessions.login import COOKIE_NAME as SESSION_COOKIE
from authserver.sessions.login import set_session_cookie_on
from authserver.web import plain_cookie_value
from authserver.webauthn import service


def _written(set_on: Any, *args: Any) -> str:
    """The ``Set-Cookie`` value a views' cookie function writes."""
    response = Response()
    set_on(response, *args)
    return response.headers["Set-Cookie"]


def dropped_flask_session(app: Flask) -> tuple[str, str]:
    """Flask's own ``Set-Cookie`` when a view clears its session (always the same)."""
    interface = app.session_interface
    response = Response()
    response.delete_cookie(
        app.config["SESSION_COOKIE_NAME"],
        domain=interface.get_cookie_domain(app),
        path=interface.get_cookie_path(app),
        secure=interface.get_cookie_secure(app),
        partitioned=interface.get_cookie_partitioned(app),
        httponly=interface.get_cookie_httponly(app),
        samesite=interface.get_cookie_samesite(app),
    )
    return ("Set-Cookie", response.headers["Set-Cookie"])


class LoginCookies:
    """The cookies of a login. Only the value changes from one login to the next (and the
    device cookie's expiry date, by the second); a value that would need quoting (never
    one of ours) is written by the views' function itself."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._session = _written(set_session_cookie_on, "", settings)
        self._device_second = -1
        self._device = ""

    def session(self, token: str) -> tuple[str, str]:
        if not plain_cookie_value(token):
            return ("Set-Cookie", _written(set_session_cookie_on, token, self.settings))
        return ("Set-Cookie", _with_value(self._session, SESSION_COOKIE, token))

    def device(self, value: str) -> tuple[str, str]:
        """The device cookie with its lifetime renewed (its Expires date is this second's)."""
        secure = self.settings.secure_cookies
        if not plain_cookie_value(value):
            return ("Set-Cookie", _written(devices.set_device_cookie_on, value, secure))
        second = int(time.time())
        if second != self._device_second:
            self._device = _written(devices.set_device_cookie_on, "", secure)
            self._device_second = second
        return ("Set-Cookie", _with_value(self._device, devices.COOKIE_NAME, value))

    def binding(self, token: str, script_root: str) -> tuple[str, str]:
        """A new browser's ceremony cookie (rare: once per browser), under the mount point."""
        secure = self.settings.secure_cookies
        return ("Set-Cookie", _written(service.set_binding_cookie_on, token, secure, script_root))


def _with_value(template: str, name: str, value: str) -> str:
    """``name=; attributes`` → ``name=value; attributes``."""
    return f"{name}={value}{template[len(name) + 1 :]}"
