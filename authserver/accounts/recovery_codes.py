"""One-time recovery codes (issue 14): offered once a passkey is added, shown once, hashed,
each single use, regenerated (all at once) after a re-authentication.

A code replaces the e-mailed link of « J'ai perdu ma clé d'accès » when the mailbox is out of
reach too: it leads to the same page, which enrols a new passkey and alerts the owner.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from authserver.models import RecoveryCode, utcnow

COUNT = 10
# Crockford-like: no 0/O, 1/I/L, U; 12 characters of 5 bits each (60 bits), shown in 3 groups.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12
GROUP = 4


def _normalise(code: str) -> str | None:
    """What was typed, as stored: upper case, no blanks or dashes; None if it cannot be one."""
    cleaned = "".join(code.split()).replace("-", "").upper()
    if len(cleaned) != LENGTH or any(char not in ALPHABET for char in cleaned):
        return None
    return cleaned


def _hash(normalised: str) -> bytes:
    return hashlib.sha256(normalised.encode()).digest()


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + GROUP] for i in range(0, LENGTH, GROUP))


def generate(session: Session, user_id: int, now: datetime | None = None) -> list[str]:
    """Replace the account's codes with ``COUNT`` new ones; return them (shown once, never
    stored in clear). The caller commits."""
    now = now or utcnow()
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [_new_code() for _ in range(COUNT)]
    for code in codes:
        normalised = _normalise(code)
        assert normalised is not None
        session.add(RecoveryCode(user_id=user_id, code_hash=_hash(normalised), created_at=now))
    return codes


def left(session: Session, user_id: int) -> int:
    """How many unused codes the account has."""
    return (
        session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def redeem(session: Session, user_id: int, code: str) -> bool:
    """Spend ``code`` of this account if it is one of its unused codes (one conditional
    UPDATE: two browsers racing on one code cannot both win). The caller commits."""
    normalised = _normalise(code)
    if normalised is None:
        return False
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == _hash(normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
