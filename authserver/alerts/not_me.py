"""« Ce n'était pas moi »: lock the attacker out and hand the account back to its owner.

Every session ends at once, the next password login needs a reset (a link is
e-mailed), every passkey waits for the owner's review, and the security team
gets a high-priority alert.
"""

from __future__ import annotations

from sqlalchemy import update

from authserver import db
from authserver.accounts import tokens
from authserver.accounts.service import send_reset_link
from authserver.alerts import events
from authserver.alerts.notify import NOT_ME
from authserver.models import SecurityEvent, User, WebAuthnCredential
from authserver.sessions import store
from authserver.web import client_ip, user_agent


def pending_report(token: str) -> tuple[User, dict[str, object]]:
    """The account and login a link reports, without using it (for the confirmation page)."""
    session = db.session()
    row = tokens.peek(session, token, NOT_ME)
    user = session.get(User, row.user_id)
    if user is None:
        raise tokens.TokenInvalid()
    return user, dict(row.data or {})


def report(token: str) -> User:
    """Consume the link and secure the account (caller commits)."""
    session = db.session()
    consumed = tokens.consume(session, token, NOT_ME)
    user = session.get(User, consumed.user_id)
    if user is None:
        raise tokens.TokenInvalid()
    revoked = store.revoke_all(session, user.id, "not_me")
    user.password_reset_required = True
    session.execute(
        update(WebAuthnCredential)
        .where(WebAuthnCredential.user_id == user.id)
        .values(review_required=True)
    )
    send_reset_link(user)
    details = {**(consumed.data or {}), "sessions_revoked": revoked, "reporter_ip": client_ip()}
    session.add(
        SecurityEvent(
            kind="not_me", severity="high", user_id=user.id, ip=client_ip(), details=details
        )
    )
    events.emit(
        "not_me_report",
        account=user.username,
        ip=client_ip(),
        user_agent=user_agent(),
        sessions_revoked=revoked,
        severity="high",
    )
    return user
