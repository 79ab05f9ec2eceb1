"""Bearer tokens for the security API, created from the CLI; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from authserver.models import ApiToken, User, utcnow
from authserver.sessions.staff import SECURITY_ROLES

CONSOLE_ROLES = SECURITY_ROLES
PREFIX = "ats_"
# last_used_at is written at most this often: not a write per API call.
TOUCH_EVERY = timedelta(seconds=60)


class TokenError(Exception):
    """The token cannot be created or revoked; the message is the French sentence."""


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create(session: Session, *, user: User, name: str) -> str:
    """Add a token for ``user`` (a security or admin account); return it (shown once)."""
    name = name.strip()
    if not name or len(name) > 64:
        raise TokenError("le nom du jeton doit faire de 1 à 64 caractères")
    if user.role not in CONSOLE_ROLES:
        raise TokenError("le compte doit avoir le rôle security ou admin")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenError("un jeton porte déjà ce nom")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=token_hash(token), user_id=user.id))
    from authserver.alerts.events import after_commit

    after_commit(session, "api_token_created", account=user.username, token_name=name)
    return token


def revoke(session: Session, name: str, now: datetime | None = None) -> bool:
    """Revoke the token named ``name``; False if there is no live token of that name."""
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now or utcnow()
    return True


def authenticate(session: Session, token: str, now: datetime | None = None) -> ApiToken | None:
    """The live token row for this bearer value (its user may still lack the role)."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        row.last_used_at = now
    return row
