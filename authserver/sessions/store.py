"""Session records: open, load, touch, revoke. Storage only; no Flask here.

The cookie carries 32 random bytes; the table keeps their SHA-256, so reading
the database does not give anyone a session. A session dies at the first of:
its idle timeout, its absolute lifetime, or a revocation.

Two hashes per row: ``id_hash`` names the session for good (its OAuth tokens and
codes, its OIDC ``sid``), ``token_hash`` is the hash of the cookie value the browser
holds now. They start equal; a re-authentication of the same user in the same
browser (``prompt=login``, a passkey step-up) gives the browser a new cookie value
(no fixation after a privilege change) while the session — and every service's
tokens bound to it — lives on.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from authserver.models import AuthSession, User, utcnow

# last_seen_at is written at most this often: not a write per request.
TOUCH_EVERY = timedelta(seconds=60)
_SESSIONS = AuthSession.__table__
OPEN = insert(_SESSIONS)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Lifetimes:
    idle: int
    absolute: int


def open_session(
    session: Session,
    user: User,
    *,
    method: str,
    amr: list[str],
    ip: str,
    user_agent: str,
    lifetimes: Lifetimes,
    device_id: int | None = None,
) -> str:
    """Insert a new session row; return the cookie value (shown once, never stored).

    A Core INSERT, not the unit of work: this runs on every login.
    """
    token, row = new_session_row(
        user.id,
        method=method,
        amr=amr,
        ip=ip,
        user_agent=user_agent,
        lifetimes=lifetimes,
        device_id=device_id,
    )
    session.execute(OPEN, row)
    return token


def new_session_row(
    user_id: int,
    *,
    method: str,
    amr: list[str],
    ip: str,
    user_agent: str,
    lifetimes: Lifetimes,
    device_id: int | None,
) -> tuple[str, dict[str, object]]:
    """A fresh cookie value and the row of ``OPEN`` for it (also run by the login fast path)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    digest = hash_token(token)
    return token, {
        "id_hash": digest,
        "token_hash": digest,
        "user_id": user_id,
        "created_at": now,
        "authenticated_at": now,
        "last_seen_at": now,
        "expires_at": now + timedelta(seconds=lifetimes.absolute),
        "revoked_at": None,
        "revoked_reason": None,
        "method": method,
        "amr": " ".join(amr),
        "ip": ip,
        "user_agent": user_agent,
        "device_id": device_id,
    }


def reauthenticate(
    session: Session,
    record: AuthSession,
    *,
    method: str,
    amr: list[str],
    ip: str,
    user_agent: str,
    lifetimes: Lifetimes,
    device_id: int | None = None,
) -> str:
    """The same user logged in again in this browser: same session, new cookie value.

    The session's tokens at other services stay valid (no back-channel logout); its
    proof of presence, method and lifetime are those of this login.
    """
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(
        update(_SESSIONS)
        .where(_SESSIONS.c.id_hash == record.id_hash)
        .values(
            token_hash=hash_token(token),
            authenticated_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=lifetimes.absolute),
            method=method,
            amr=" ".join(amr),
            ip=ip,
            user_agent=user_agent,
            device_id=device_id,
            reauthenticated_at=None,
            reauth_method=None,
        )
    )
    return token


def confirm_presence(session: Session, record: AuthSession, *, method: str) -> str:
    """« Confirmez votre identité » succeeded: record it apart, give the browser a new cookie.

    The login's ``authenticated_at``/``method``/``amr`` stay as they were: a password
    typed here must not make a passkey login look recent to an OIDC step-up (issue 11).
    """
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(
        update(_SESSIONS)
        .where(_SESSIONS.c.id_hash == record.id_hash)
        .values(token_hash=hash_token(token), reauthenticated_at=now, reauth_method=method)
    )
    record.reauthenticated_at, record.reauth_method = now, method
    return token


def last_presence(record: AuthSession) -> datetime | None:
    """When this browser last proved presence: its login or a later re-authentication."""
    moments = [m for m in (record.authenticated_at, record.reauthenticated_at) if m is not None]
    return max(moments) if moments else None


def load_session(
    session: Session, token: str, lifetimes: Lifetimes, now: datetime | None = None
) -> AuthSession | None:
    """The live session for this cookie value, or None (unknown, revoked, idle, expired)."""
    if not token or len(token) > 100:
        return None
    now = now or utcnow()
    record = session.scalar(select(AuthSession).where(AuthSession.token_hash == hash_token(token)))
    if record is None or not is_live(record, lifetimes, now):
        return None
    return record


def is_live(record: AuthSession, lifetimes: Lifetimes, now: datetime | None = None) -> bool:
    """Not revoked, not expired, not idle, account not locked (also used by OIDC tokens)."""
    return live(
        revoked_at=record.revoked_at,
        expires_at=record.expires_at,
        last_seen_at=record.last_seen_at,
        locked_at=record.user.locked_at,
        idle=lifetimes.idle,
        now=now or utcnow(),
    )


def live(
    *,
    revoked_at: datetime | None,
    expires_at: datetime,
    last_seen_at: datetime,
    locked_at: datetime | None,
    idle: int,
    now: datetime,
) -> bool:
    """The one liveness rule, on plain values: the ORM's ``is_live`` and forward-auth's one
    statement (sessions/forward_auth.py) both ask it."""
    return (
        revoked_at is None
        and expires_at > now
        and last_seen_at + timedelta(seconds=idle) > now
        and locked_at is None
    )


def needs_touch(record: AuthSession, now: datetime | None = None) -> bool:
    return (now or utcnow()) - record.last_seen_at >= TOUCH_EVERY


def touch(session: Session, record: AuthSession, now: datetime | None = None) -> None:
    now = now or utcnow()
    session.execute(
        update(AuthSession).where(AuthSession.id_hash == record.id_hash).values(last_seen_at=now)
    )
    record.last_seen_at = now


# --- Revocation hooks (issue 6) -------------------------------------------------------------
# Called in the revoking transaction with the ids that were live until now, so that what
# depends on a session (OIDC back-channel logout) is queued atomically with its end.
RevokeHook = Callable[[Session, list[bytes], str], None]
_revoke_hooks: list[RevokeHook] = []


def on_revoke(hook: RevokeHook) -> RevokeHook:
    if hook not in _revoke_hooks:
        _revoke_hooks.append(hook)
    return hook


def _revoked(session: Session, ids: list[bytes], reason: str, user_id: int | None = None) -> None:
    if ids:
        from authserver.alerts.events import after_commit

        after_commit(session, "session_revoked", sessions=len(ids), reason=reason, user_id=user_id)
        for hook in _revoke_hooks:
            hook(session, ids, reason)


def revoke(session: Session, id_hash: bytes, reason: str) -> None:
    result = session.execute(
        update(AuthSession)
        .where(AuthSession.id_hash == id_hash, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    if result.rowcount:
        _revoked(session, [id_hash], reason)


def revoke_all(session: Session, user_id: int, reason: str, *, keep: bytes | None = None) -> int:
    """Revoke every live session of the user (except ``keep``); return how many."""
    live = select(AuthSession.id_hash).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
    )
    if keep is not None:
        live = live.where(AuthSession.id_hash != keep)
    ids = list(session.scalars(live))
    if not ids:
        return 0
    result = session.execute(
        update(AuthSession)
        .where(AuthSession.id_hash.in_(ids), AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    _revoked(session, ids, reason, user_id)
    return result.rowcount or 0
