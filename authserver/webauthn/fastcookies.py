"""The cookies of the passkey login fast path (fastpath.py): reading the request's, and
writing a login's ``Set-Cookie`` values exactly as the views' werkzeug calls write them,
with the work done once (tests/webauthn/test_fastpath.py compares both answers)."""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Flask
from werkzeug.http import dump_cookie, parse_cookie
from werkzeug.wrappers import Response

from authserver.alerts import devices
from authserver.sessions.login import COOKIE_NAME as SESSION_COOKIE

_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._\-]*")


def request_cookies(header: str) -> dict[str, str]:
    """The request's cookies, as werkzeug's ``parse_cookie`` reads them (the first of a
    name wins). Ours are plain tokens, read here; a header with anything else (quotes,
    escapes, spaces inside a value, non-ASCII) is werkzeug's to read."""
    found: dict[str, str] = {}
    if header.isascii():
        for part in header.split(";"):
            name, _, value = part.partition("=")
            name = name.strip()
            if name and name not in found:
                found[name] = value = value.strip()
                if not _PLAIN_VALUE.fullmatch(value):
                    break
        else:
            return found
    return dict(parse_cookie(header).items())


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
    """The ``Set-Cookie`` values of a login, as the views' ``dump_cookie`` writes them.

    Only the value changes from one login to the next (and the device cookie's expiry date,
    by the second): the rest is written once by werkzeug and reused. A value that would
    need quoting (never one of ours: base64url and itsdangerous output) goes through
    werkzeug again."""

    PLAIN = re.compile(r"[A-Za-z0-9_.\-]+")

    def __init__(self, settings: Any) -> None:
        self.secure = settings.secure_cookies
        self.domain = settings.cookie_domain
        self._session = self._dump_session("")
        self._device_second = -1
        self._device = ""

    def _dump_session(self, value: str) -> str:
        return dump_cookie(
            SESSION_COOKIE,
            value,
            httponly=True,
            secure=self.secure,
            samesite="Lax",
            path="/",
            domain=self.domain,
        )

    def _dump_device(self, value: str) -> str:
        return dump_cookie(
            devices.COOKIE_NAME,
            value,
            max_age=devices.COOKIE_MAX_AGE,
            httponly=True,
            secure=self.secure,
            samesite="Lax",
            path="/",
        )

    def session(self, token: str) -> tuple[str, str]:
        if not self.PLAIN.fullmatch(token):
            return ("Set-Cookie", self._dump_session(token))
        return ("Set-Cookie", _with_value(self._session, SESSION_COOKIE, token))

    def device(self, value: str) -> tuple[str, str]:
        """The device cookie with its lifetime renewed (its Expires date is this second's)."""
        if not self.PLAIN.fullmatch(value):
            return ("Set-Cookie", self._dump_device(value))
        second = int(time.time())
        if second != self._device_second:
            self._device, self._device_second = self._dump_device(""), second
        return ("Set-Cookie", _with_value(self._device, devices.COOKIE_NAME, value))


def _with_value(template: str, name: str, value: str) -> str:
    """``name=; attributes`` → ``name=value; attributes``."""
    return f"{name}={value}{template[len(name) + 1 :]}"
