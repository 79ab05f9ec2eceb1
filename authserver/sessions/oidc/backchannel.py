"""OIDC Back-Channel Logout 1.0: when a session ends, tell the services it logged in to.

The revocation (logout, password reset, « ce n'était pas moi », security team, « Mes
sessions ») calls ``queue_logouts`` through ``store.on_revoke`` in its own transaction: one
outbox row per service, committed with the revocation or not at all. A daemon thread in each
server process signs the logout token at sending time and POSTs it, with retries and
exponential backoff; the request that ended the session never waits for a service.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from sqlalchemy import ColumnElement, and_, event, or_, select, update
from sqlalchemy.orm import Session

from authserver.db import Database
from authserver.models import (
    AuthSession,
    BackchannelLogout,
    OAuthClient,
    OAuthToken,
    User,
    utcnow,
)
from authserver.sessions.oidc import claims, keys

log = logging.getLogger(__name__)

EVENT = "http://schemas.openid.net/event/backchannel-logout"
LEASE = timedelta(seconds=60)
TIMEOUT = 5.0
MAX_ATTEMPTS = 12
_FLAG = "authserver.backchannel_queued"


def queue_logouts(session: Session, id_hashes: list[bytes], reason: str) -> None:
    """``store.on_revoke`` hook: one logout per (session, service with a back-channel URI)."""
    _queue(session, OAuthToken.session_id_hash.in_(id_hashes), reason)


def queue_service_logouts(session: Session, user_id: int, client_id: str, reason: str) -> None:
    """One service loses its access (« Retirer l'autorisation »): one logout per session in
    which it still holds tokens. Call it before the tokens are revoked."""
    _queue(
        session,
        and_(
            OAuthToken.user_id == user_id,
            OAuthToken.client_id == client_id,
            OAuthToken.revoked_at.is_(None),
            AuthSession.revoked_at.is_(None),
        ),
        reason,
    )


def _queue(session: Session, where: ColumnElement[bool], reason: str) -> None:
    rows = session.execute(
        select(
            OAuthToken.session_id_hash,
            OAuthToken.client_id,
            OAuthClient.backchannel_logout_uri,
            User.public_id,
        )
        .join(OAuthClient, OAuthClient.client_id == OAuthToken.client_id)
        .join(User, User.id == OAuthToken.user_id)
        .join(AuthSession, AuthSession.id_hash == OAuthToken.session_id_hash)
        .where(where, OAuthClient.backchannel_logout_uri.is_not(None))
        .distinct()
    ).all()
    for id_hash, client_id, uri, sub in rows:
        session.add(
            BackchannelLogout(
                client_id=client_id,
                uri=uri,
                sub=sub,
                sid=claims.session_sid(id_hash),
                reason=reason[:32],
            )
        )
    if rows:
        session.info[_FLAG] = True


def logout_token(
    *, issuer: str, client_id: str, sub: str, sid: str, kid: str, key: Any, now: int
) -> str:
    """The signed JWT of OIDC Back-Channel Logout 1.0 §2.4 (no nonce, the logout event)."""
    payload = {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
        "sub": sub,
        "sid": sid,
        "events": {EVENT: {}},
    }
    return jwt.encode({"alg": keys.ALG, "kid": kid, "typ": "logout+jwt"}, payload, key, [keys.ALG])


def post(uri: str, token: str) -> None:
    """Deliver one logout token; any answer but 200/204 is a failure to retry."""
    body = urllib.parse.urlencode({"logout_token": token}).encode()
    request = urllib.request.Request(  # noqa: S310 (URI registered by an administrator)
        uri,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
        if response.status not in (200, 204):
            raise RuntimeError(f"HTTP {response.status}")


@dataclass(frozen=True)
class Pending:
    id: int
    client_id: str
    uri: str
    sub: str
    sid: str


class BackchannelWorker:
    """Sends due logout tokens; started on the first queued logout (or pending ones at start)."""

    def __init__(
        self, database: Database, *, issuer: str, secret_key: str, retry_base: float = 2.0
    ) -> None:
        self.database = database
        self.issuer = issuer
        self.secret_key = secret_key
        self.retry_base = retry_base
        self.wakeup = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="oidc-backchannel", daemon=True
                )
                self._thread.start()
        self.wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _claim(self, now: datetime) -> list[Pending]:
        claimed = []
        with self.database.session_scope() as session:
            due = session.scalars(
                select(BackchannelLogout.id)
                .where(
                    BackchannelLogout.status == "pending",
                    BackchannelLogout.next_attempt_at <= now,
                    or_(
                        BackchannelLogout.claimed_until.is_(None),
                        BackchannelLogout.claimed_until < now,
                    ),
                )
                .order_by(BackchannelLogout.id)
                .limit(50)
            ).all()
        for row_id in due:
            with self.database.session_scope() as session:
                won = session.execute(
                    update(BackchannelLogout)
                    .where(
                        BackchannelLogout.id == row_id,
                        BackchannelLogout.status == "pending",
                        or_(
                            BackchannelLogout.claimed_until.is_(None),
                            BackchannelLogout.claimed_until < now,
                        ),
                    )
                    .values(claimed_until=now + LEASE)
                ).rowcount
                if won == 1:
                    row = session.get(BackchannelLogout, row_id)
                    assert row is not None
                    claimed.append(Pending(row.id, row.client_id, row.uri, row.sub, row.sid))
        return claimed

    def run_once(self) -> tuple[int, int]:
        """Send what is due now; return (sent, failed attempts)."""
        sent = failed = 0
        due = self._claim(utcnow())
        if not due:
            return 0, 0
        with self.database.session_scope() as session:
            kid, key = keys.signing_key(session, self.secret_key)
        for item in due:
            try:
                token = logout_token(
                    issuer=self.issuer,
                    client_id=item.client_id,
                    sub=item.sub,
                    sid=item.sid,
                    kid=kid,
                    key=key,
                    now=int(time.time()),
                )
                post(item.uri, token)
            except Exception as exc:  # network, HTTP status: retried later
                failed += 1
                self._failed(item.id, exc)
                continue
            sent += 1
            with self.database.session_scope() as session:
                session.execute(
                    update(BackchannelLogout)
                    .where(BackchannelLogout.id == item.id)
                    .values(
                        status="sent",
                        sent_at=utcnow(),
                        attempts=BackchannelLogout.attempts + 1,
                        claimed_until=None,
                        last_error=None,
                    )
                )
        return sent, failed

    def _failed(self, row_id: int, exc: Exception) -> None:
        with self.database.session_scope() as session:
            row = session.get(BackchannelLogout, row_id)
            if row is None:
                return
            row.attempts += 1
            row.claimed_until = None
            row.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            if row.attempts >= MAX_ATTEMPTS:
                row.status = "failed"
            delay = min(self.retry_base * 2 ** (row.attempts - 1), 600.0)
            row.next_attempt_at = utcnow() + timedelta(seconds=delay * random.uniform(0.8, 1.2))
        log.warning("back-channel logout %s to %s failed: %s", row_id, row.client_id, exc)

    def _next_due_in(self) -> float | None:
        with self.database.session_scope() as session:
            when = session.scalar(
                select(BackchannelLogout.next_attempt_at)
                .where(BackchannelLogout.status == "pending")
                .order_by(BackchannelLogout.next_attempt_at)
                .limit(1)
            )
        return None if when is None else max((when - utcnow()).total_seconds(), 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wakeup.clear()
            try:
                self.run_once()
                wait = self._next_due_in()
            except Exception:
                log.warning("back-channel logout round failed; retrying", exc_info=True)
                wait = 2.0
            self.wakeup.wait(timeout=min(wait if wait is not None else 60.0, 60.0) or 0.05)

    def has_pending(self) -> bool:
        try:
            return self._next_due_in() is not None
        except Exception:  # schema not migrated yet (CLI before `db upgrade`)
            return False


def install_wakeup(database: Database, worker: BackchannelWorker) -> None:
    @event.listens_for(database.factory, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.info.pop(_FLAG, False):
            worker.kick()

    @event.listens_for(database.factory, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_FLAG, None)
