"""Device recognition: a long-lived signed cookie names the browser; the table keeps its hash.

A browser is a known device of an account when it carries a valid cookie whose
hash is recorded for that account. No cookie, a deleted one, a forged one, or
another account's: a new device.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from flask import Response, current_app, g, request
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from user_agents import parse as parse_user_agent

from authserver import db
from authserver.models import Device, User, utcnow
from authserver.web import client_ip, user_agent

COOKIE_NAME = "authserver_device"
COOKIE_MAX_AGE = 400 * 24 * 3600  # browsers cap persistent cookies at 400 days


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="authserver.device-cookie")


def browser_token() -> str | None:
    """The random id in this browser's device cookie, if the cookie is genuine."""
    raw = request.cookies.get(COOKIE_NAME)
    if not raw or len(raw) > 200:
        return None
    try:
        value = _serializer().loads(raw)
    except BadSignature:
        return None
    return value if isinstance(value, str) and len(value) == 43 else None


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
    """Readable browser and system, e.g. ("Chrome 131", "Windows 10")."""
    parsed = parse_user_agent(ua or "")
    browser = f"{parsed.browser.family} {parsed.browser.version_string}".strip()
    system = f"{parsed.os.family} {parsed.os.version_string}".strip()
    return browser[:64] or "Navigateur inconnu", system[:64] or "Système inconnu"


@dataclass(frozen=True)
class DeviceLogin:
    device: Device
    is_new: bool
    first_ever: bool


def remember(user: User) -> DeviceLogin:
    """Record this browser as a device of ``user`` at a successful login (caller commits)."""
    session = db.session()
    now = utcnow()
    token = browser_token()
    device = None
    if token is not None:
        device = session.scalar(
            select(Device).where(Device.user_id == user.id, Device.cookie_hash == token_hash(token))
        )
    if device is not None:
        device.last_seen_at = now
        device.last_ip = client_ip()
        return DeviceLogin(device, is_new=False, first_ever=False)

    first_ever = session.scalar(select(Device.id).where(Device.user_id == user.id).limit(1)) is None
    if token is None:
        token = secrets.token_urlsafe(32)
        g.new_device_cookie = _serializer().dumps(token)
    ua = user_agent()
    browser, system = describe(ua)
    device = Device(
        user_id=user.id,
        cookie_hash=token_hash(token),
        first_seen_at=now,
        last_seen_at=now,
        last_ip=client_ip(),
        user_agent=ua,
        browser=browser,
        system=system,
    )
    session.add(device)
    session.flush()
    return DeviceLogin(device, is_new=True, first_ever=first_ever)


def set_device_cookie(response: Response) -> Response:
    value = g.get("new_device_cookie")
    if value:
        response.set_cookie(
            COOKIE_NAME,
            value,
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            secure=current_app.config["AUTHSERVER"].secure_cookies,
            samesite="Lax",
            path="/",
        )
    return response
