"""Which passkeys a recovery puts under review (issue 11).

A passkey added with a stolen session cookie, or by someone who had the password, survives
a password change: it is a way in of its own. So when the owner takes the account back
(a password reset link, « Ce n'était pas moi »), the passkeys that may be the intruder's
stop working until the owner vouches for them on « Mes clés d'accès » (after confirming
their identity).

Which ones: every passkey added since the account's last *trusted login* — a login, not a
re-authentication, from a browser already known to the account (or the account's very
first login) — since anything done after it may have been done by someone else in that
session. With no trusted login at all, every passkey. « Ce n'était pas moi » reviews them
all (:func:`review_all`): the owner says that a login was not theirs, and an intruder may
have been in since before it.

Storage only, no Flask; the caller commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

# The login event reason of a successful login from a browser the account did not know yet
# (alerts/policy.py decides it); a known browser's login has no reason.
from authserver.alerts.policy import NEW_DEVICE
from authserver.models import LoginEvent, WebAuthnCredential

__all__ = ["NEW_DEVICE", "last_trusted_login", "review_all", "review_since_trusted_login"]

LOGIN_METHODS = ("password", "passkey")


def last_trusted_login(session: Session, user_id: int) -> datetime | None:
    return session.scalar(
        select(func.max(LoginEvent.created_at)).where(
            LoginEvent.user_id == user_id,
            LoginEvent.outcome == "success",
            LoginEvent.method.in_(LOGIN_METHODS),
            LoginEvent.reason == "",
        )
    )


def review_since_trusted_login(session: Session, user_id: int) -> int:
    """Suspend the passkeys added since the last trusted login; return how many."""
    since = last_trusted_login(session, user_id)
    return _review(session, user_id, since)


def review_all(session: Session, user_id: int) -> int:
    return _review(session, user_id, None)


def _review(session: Session, user_id: int, since: datetime | None) -> int:
    credentials = WebAuthnCredential.__table__.c
    statement = (
        update(WebAuthnCredential)
        .where(credentials.user_id == user_id, credentials.review_required.is_(False))
        .values(review_required=True)
    )
    if since is not None:
        statement = statement.where(credentials.created_at >= since)
    return session.execute(statement).rowcount or 0
