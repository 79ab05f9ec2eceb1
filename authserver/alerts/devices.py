"""Device recognition: a long-lived signed cookie names the browser; the table keeps its hash.

A browser is a known device of an account when it carries a valid cookie whose
hash is recorded for that account. No cookie, a deleted one, a forged one, or
another account's: a new device.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Response, current_app, g, request
from itsdangerous import BadSignature, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_encode
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session
from ua_parser import OS, UserAgent, parse_os, parse_user_agent

from authserver import db
from authserver.models import Device

COOKIE_NAME = "authserver_device"
COOKIE_MAX_AGE = 400 * 24 * 3600  # browsers cap persistent cookies at 400 days


@functools.lru_cache(maxsize=16)
def _serializer(key: str) -> URLSafeSerializer:
    """One per secret key (building one costs more than checking a cookie with it)."""
    return URLSafeSerializer(key, salt="authserver.device-cookie")


class _NotGenuine(Exception):
    pass


@functools.lru_cache(maxsize=4096)
def _checked(key: str, raw: str) -> str:
    """The token in a cookie signed with ``key``. The cookie carries no date, so the answer
    never changes: a returning browser's signature is checked once per worker, not at
    every login. A refusal raises, and lru_cache keeps no exception: only genuine cookies
    are remembered, so forged ones cannot push them out."""
    try:
        value = _serializer(key).loads(raw)
    except BadSignature:
        raise _NotGenuine from None
    if not isinstance(value, str) or len(value) != 43:
        raise _NotGenuine
    return value


def browser_token(
    raw: str | None = None, *, key: str | None = None, fallbacks: Sequence[str] | None = None
) -> str | None:
    """The random id in this browser's device cookie (``raw``, or this request's), if the
    cookie is genuine; ``key`` is the app's secret key and ``fallbacks`` its earlier ones
    (the current app's by default): a rotated secret does not make every browser new."""
    if raw is None:
        raw = request.cookies.get(COOKIE_NAME)
    if not raw or len(raw) > 200:
        return None
    if key is None:
        key = current_app.config["SECRET_KEY"]
        fallbacks = current_app.config.get("SECRET_KEY_FALLBACKS", ())
    for candidate in (key, *(fallbacks or ())):
        try:
            return _checked(candidate, raw)
        except _NotGenuine:
            continue
    return None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def known_device(user_id: int) -> Device | None:
    token = browser_token()
    if token is None:
        return None
    return db.session().scalar(
        select(Device).where(Device.user_id == user_id, Device.cookie_hash == token_hash(token))
    )


def describe(ua: str) -> tuple[str, str]:
    """Readable browser and system: ("Chrome 131", "Windows 10"), ("Mobile Safari 17.5", "iOS 17.5")

    ua-parser (uap-core's regexes, maintained) does the parsing; what it cannot name
    (family ``Other``, an empty or garbage header) is « Navigateur inconnu » /
    « Système inconnu ». A minor version of 0 says nothing and is left out.
    """

    def readable(found: UserAgent | OS | None, unknown: str) -> str:
        if found is None or not found.family or found.family == "Other":
            return unknown
        version = found.major or ""
        if version and found.minor and found.minor != "0":
            version += f".{found.minor}"
        return f"{found.family} {version}".strip()[:64]

    return (
        readable(parse_user_agent(ua) if ua else None, "Navigateur inconnu"),
        readable(parse_os(ua) if ua else None, "Système inconnu"),
    )


# A known device's last_seen_at / last_ip are written at most this often (same IP).
TOUCH_EVERY = timedelta(seconds=60)
_DEVICES = Device.__table__
KNOWN = select(_DEVICES.c.id, _DEVICES.c.last_seen_at, _DEVICES.c.last_ip).where(
    _DEVICES.c.user_id == bindparam("user_id"), _DEVICES.c.cookie_hash == bindparam("cookie")
)
ANY = select(_DEVICES.c.id).where(_DEVICES.c.user_id == bindparam("user_id")).limit(1)
TOUCH = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("pk"))
    .values(last_seen_at=bindparam("now"), last_ip=bindparam("ip"))
)
INSERT = insert(_DEVICES).returning(_DEVICES.c.id)


@dataclass(frozen=True)
class KnownDevice:
    """This browser's row among the account's devices."""

    id: int
    last_seen_at: datetime
    last_ip: str


def touch_due(last_ip: str, last_seen_at: datetime, ip: str, now: datetime) -> bool:
    return last_ip != ip or now - last_seen_at >= TOUCH_EVERY


def new_token() -> str:
    return secrets.token_urlsafe(32)


def current_cookie(raw: str, token: str, key: str) -> str:
    """``raw``, a genuine device cookie carrying ``token``, if ``key`` signed it; else the same
    token signed with ``key`` (after ``authserver secret rotate``)."""
    try:
        _checked(key, raw)  # cached for a genuine cookie: no signature computed again
    except _NotGenuine:
        return cookie_value(token, key)
    return raw


@functools.lru_cache(maxsize=16)
def _signer(key: str) -> Signer:
    return _serializer(key).make_signer()


def cookie_value(token: str, key: str) -> str:
    """The signed device cookie carrying ``token`` (``key``: the app's secret key).

    What ``_serializer(key).dumps(token)`` writes, with its signer built once and without its
    attempt to compress: a zlib stream of 45 random characters is never the shorter, and
    setting up one cost more than the rest of the cookie (12 µs per new browser, 5 now)."""
    return _signer(key).sign(base64_encode(json.dumps(token))).decode()


def new_device_row(
    *, user_id: int, token: str, ip: str, agent: str, now: datetime
) -> dict[str, Any]:
    """The complete row of ``INSERT`` for a browser new to the account (the login fast path
    runs it on a driver connection, where no column default applies)."""
    browser, system = describe(agent)
    return {
        "user_id": user_id,
        "cookie_hash": token_hash(token),
        "first_seen_at": now,
        "last_seen_at": now,
        "last_ip": ip,
        "user_agent": agent,
        "browser": browser,
        "system": system,
    }


def read_known(
    session: Session, user_id: int, token: str | None
) -> tuple[KnownDevice | None, bool]:
    """This browser's device row for ``user_id`` (``token``: its genuine cookie's), and
    whether the account has any device at all (the views' reads; the fast path reads both in
    its one statement)."""
    if token is not None:
        known = session.execute(KNOWN, {"user_id": user_id, "cookie": token_hash(token)}).first()
        if known is not None:
            return KnownDevice(known.id, known.last_seen_at, known.last_ip), True
    return None, session.execute(ANY, {"user_id": user_id}).first() is not None


def set_device_cookie_on(response: Response, value: str, secure: bool) -> None:
    """The device cookie, its lifetime renewed (also written by the login fast path)."""
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/",
    )


def set_device_cookie(response: Response) -> Response:
    value = g.get("new_device_cookie")
    if value:
        set_device_cookie_on(response, value, current_app.config["AUTHSERVER"].secure_cookies)
    return response
