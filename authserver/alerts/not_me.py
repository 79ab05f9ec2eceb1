"""« Ce n'était pas moi »: lock the attacker out and hand the account back to its owner.

Every session ends at once, the next password login needs a reset (a link is
e-mailed), every passkey waits for the owner's review, the browsers trusted since
the reported login are forgotten, and the security team gets a high-priority alert.

The link's token is random (32 bytes) and only its SHA-256 is stored, with its purpose,
expiry and single use (``accounts.tokens``): as strong as an itsdangerous signature, and
it can be revoked and used once, which a bare signature cannot.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authserver import db
from authserver.accounts import tokens
from authserver.accounts.service import send_reset_link
from authserver.alerts import events
from authserver.alerts.notify import NOT_ME
from authserver.models import Device, SecurityEvent, User
from authserver.sessions import store
from authserver.web import client_ip, user_agent
from authserver.webauthn import review


def pending_report(token: str) -> tuple[User, dict[str, object]]:
    """The account and login a link reports, without using it (for the confirmation page)."""
    session = db.session()
    row = tokens.peek(session, token, NOT_ME)
    user = session.get(User, row.user_id)
    if user is None:
        raise tokens.TokenInvalid()
    return user, dict(row.data or {})


def forget_devices(session: Session, user_id: int, reported: Any) -> list[int]:
    """Stop trusting the reported browser and every one first seen since; return their ids.

    Those are the browsers that became known from the intrusion on: an attacker holding
    the password may have added more after the one reported. Browsers known before it
    stay trusted: the owner's usual browser keeps its own throttling counter (it is not
    locked out while the attacker hammers the account) and raises no new alert. An
    earlier login the owner does not recognise has its own alert, and its own link. If
    the reported device is unknown, every browser of the account is forgotten.

    A forgotten row keeps its history (login events and sessions point at it, the
    console shows it) but its cookie hash is replaced by random bytes that no cookie
    hashes to: the browser's next login is a new device again, with its alert, and it
    shares the unknown browsers' throttle. (Deleting the rows instead could make that
    login look like the account's very first one, which alerts nobody.)
    """
    statement = select(Device).where(Device.user_id == user_id)
    origin = session.get(Device, reported) if isinstance(reported, int) else None
    if origin is not None and origin.user_id == user_id:
        statement = statement.where(Device.first_seen_at >= origin.first_seen_at)
    forgotten = []
    for device in session.scalars(statement.order_by(Device.id)):
        device.cookie_hash = secrets.token_bytes(32)
        forgotten.append(device.id)
    return forgotten


def report(token: str) -> User:
    """Consume the link and secure the account, all in the caller's transaction."""
    session = db.session()
    consumed = tokens.consume(session, token, NOT_ME)
    user = session.get(User, consumed.user_id)
    if user is None:
        raise tokens.TokenInvalid()
    data = dict(consumed.data or {})
    revoked = store.revoke_all(session, user.id, "not_me")
    user.password_reset_required = True
    review.review_all(session, user.id)
    forgotten = forget_devices(session, user.id, data.get("device_id"))
    send_reset_link(user)
    details = {
        **data,
        "sessions_revoked": revoked,
        "devices_forgotten": forgotten,
        "reporter_ip": client_ip(),
    }
    # The alert's address is the reported login's (the suspect), the reporter's is a detail.
    suspect_ip = str(data.get("ip") or client_ip())
    session.add(
        SecurityEvent(
            kind="not_me", severity="high", user_id=user.id, ip=suspect_ip, details=details
        )
    )
    events.emit(
        "not_me_report",
        account=user.username,
        ip=client_ip(),
        user_agent=user_agent(),
        device=data.get("device_id"),
        outcome="account_secured",
        sessions_revoked=revoked,
        devices_forgotten=forgotten,
        severity="high",
    )
    return user
