"""Single-use e-mailed links: random tokens whose hash is stored with purpose and expiry.

Consuming is one conditional UPDATE, so two clicks racing on the same link
cannot both succeed, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from authserver.models import ActionToken, utcnow

ACTIVATION = "activation"
PASSWORD_RESET = "password_reset"  # noqa: S105 (a purpose name)
# « J'ai perdu ma clé d'accès »: the link enrols a new passkey (issue 14).
PASSKEY_RECOVERY = "passkey_recovery"
# A passwordless sign-up's first passkey, right after activation (issue 14).
PASSKEY_ENROL = "passkey_enrol"


class TokenInvalid(Exception):
    """Unknown token, or meant for something else."""


class TokenExpired(Exception):
    def __init__(self, user_id: int) -> None:
        super().__init__("token expired")
        self.user_id = user_id


class TokenUsed(Exception):
    def __init__(self, user_id: int) -> None:
        super().__init__("token already used")
        self.user_id = user_id


@dataclass(frozen=True)
class Consumed:
    user_id: int
    data: dict[str, Any] | None


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def expire_pending(session: Session, *, user_id: int, purpose: str) -> None:
    """Every unused link of this purpose stops working now (resets, once the password changed)."""
    session.execute(
        update(ActionToken)
        .where(
            ActionToken.user_id == user_id,
            ActionToken.purpose == purpose,
            ActionToken.used_at.is_(None),
            ActionToken.expires_at > utcnow(),
        )
        .values(expires_at=utcnow())
    )


INSERT = insert(ActionToken.__table__)


def new_token_row(
    *, purpose: str, user_id: int, ttl: int, data: dict[str, Any] | None, now: datetime
) -> tuple[str, dict[str, Any]]:
    """A new token and its complete row of ``INSERT`` (the passkey login fast path runs it on
    a driver connection, where no column default applies)."""
    token = secrets.token_urlsafe(32)
    return token, {
        "id_hash": _hash(token),
        "purpose": purpose,
        "user_id": user_id,
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl),
        "used_at": None,
        "data": data,
    }


def issue(
    session: Session,
    *,
    purpose: str,
    user_id: int,
    ttl: int,
    data: dict[str, Any] | None = None,
    supersede: bool = False,
) -> str:
    """Create a token; with ``supersede``, earlier unused ones of this purpose stop working."""
    now = utcnow()
    if supersede:
        expire_pending(session, user_id=user_id, purpose=purpose)
    token, row = new_token_row(purpose=purpose, user_id=user_id, ttl=ttl, data=data, now=now)
    session.add(ActionToken(**row))
    return token


def peek(session: Session, token: str, purpose: str) -> ActionToken:
    """The token row if it is still usable, without consuming it (for a confirmation page)."""
    if not token or len(token) > 100:
        raise TokenInvalid()
    row = session.scalar(select(ActionToken).where(ActionToken.id_hash == _hash(token)))
    if row is None or row.purpose != purpose:
        raise TokenInvalid()
    if row.used_at is not None:
        raise TokenUsed(row.user_id)
    if row.expires_at <= utcnow():
        raise TokenExpired(row.user_id)
    return row


def consume(session: Session, token: str, purpose: str) -> Consumed:
    row = peek(session, token, purpose)
    now = utcnow()
    won = session.execute(
        update(ActionToken)
        .where(
            ActionToken.id_hash == row.id_hash,
            ActionToken.used_at.is_(None),
            ActionToken.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if won != 1:
        raise TokenUsed(row.user_id)
    return Consumed(row.user_id, row.data)
