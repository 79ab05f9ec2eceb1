"""What every successful login does, whatever the method: device, session, event.

Password and passkey logins both end here, so they yield the same session,
the same login event and the same new-device handling.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import url_for
from sqlalchemy import select

from authserver import db
from authserver.alerts import devices, events, notify
from authserver.establishments.service import latest_certification
from authserver.models import Membership, User
from authserver.sessions.landing import STAFF_TOOLS, landing_endpoint
from authserver.sessions.login import start_session
from authserver.webauthn.review import NEW_DEVICE

AMR = {"password": ["pwd"], "passkey": ["hwk", "user"]}


def safe_next(target: str | None) -> str | None:
    """Only local paths: never send the user to another site after login."""
    if not target or len(target) > 2000:
        return None
    # Before urlsplit: it raises ValueError on some hosts (« //[ »), never on a path.
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    if "\\" in target or not target.isprintable():
        return None
    return target


def complete_login(user: User, *, method: str, next_url: str | None = None) -> str:
    """Open the session and record the login; return where to send the browser.

    The caller commits (one short write transaction for the whole login).
    """
    device_login = devices.remember(user)
    if device_login.is_new and not device_login.first_ever:
        notify.new_device_login(user, device_login, method)
    start_session(user, method=method, amr=AMR[method], device_id=device_login.device_id)
    events.record_login(
        method=method,
        outcome="success",
        # A browser the account did not know: not a trusted login (webauthn/review.py).
        reason=NEW_DEVICE if device_login.is_new and not device_login.first_ever else "",
        user=user,
        device_id=device_login.device_id,
    )
    return safe_next(next_url) or landing_url(user)


def landing_url(user: User) -> str:
    """Where ``user`` lands when nothing asked for a page (``landing.landing_endpoint``), its
    inputs read here: none for staff, one indexed read of one column for an employer."""
    status = None
    if user.role not in STAFF_TOOLS:
        status = db.session().scalar(select(Membership.status).where(Membership.user_id == user.id))
    endpoint = landing_endpoint(
        role=user.role,
        membership_status=status,
        certified=user.certified_at is not None,
        certification_asked=lambda: latest_certification(user),
    )
    return url_for(endpoint)
