"""OIDC Back-Channel Logout 1.0: when a session ends, tell the services it logged in to.

The revocation (logout, password reset, « ce n'était pas moi », security team, « Mes
sessions ») calls ``queue_logouts`` through ``store.on_revoke`` in its own transaction: one
outbox row per service, committed with the revocation or not at all. A thread in each server
process signs the logout token at sending time and POSTs it, with retries and exponential
backoff; the request that ended the session never waits for a service.

Several such threads (processes, instances) share the outbox with the e-mail outbox's
claims (``authserver/leases.py``): small batches under a claim token, the lease renewed
before each POST, only the holder marks a row sent or releases it; each logout token is
POSTed once. Its ``jti`` is chosen when the logout is queued and is the same at every
attempt, so that after a worker died mid-POST a service can recognise the second copy.

The thread runs only while something is pending: it is started by the commit that queued a
logout and by the process's first request (rows left by a previous run), never by
``create_app``, which must not wait on the database; it ends once nothing is pending.
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
from sqlalchemy import ColumnElement, and_, event, select
from sqlalchemy.orm import Session

from authserver.db import Database
from authserver.leases import Outbox
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
TIMEOUT = 5.0
# A lease covers one POST (renewed before each), not a batch: well above TIMEOUT.
LEASE = timedelta(seconds=30)
BATCH = 10
MAX_ATTEMPTS = 12
# Seconds between two rounds while the database does not answer (doubling up to the cap).
RETRY_DATABASE = (2.0, 60.0)
OUTBOX = Outbox(BackchannelLogout)
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
    *,
    issuer: str,
    client_id: str,
    sub: str,
    sid: str,
    kid: str,
    key: Any,
    now: int,
    jti: str | None = None,
) -> str:
    """The signed JWT of OIDC Back-Channel Logout 1.0 §2.4 (no nonce, the logout event)."""
    payload = {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 120,
        "jti": jti or secrets.token_urlsafe(16),
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
    jti: str | None


def claim(database: Database, token: str, now: datetime, limit: int = BATCH) -> list[Pending]:
    """Claim up to ``limit`` due logouts for ``token`` (one statement); oldest first."""
    rows = OUTBOX.claim(
        database,
        token=token,
        now=now,
        limit=limit,
        lease=LEASE,
        columns=(
            BackchannelLogout.id,
            BackchannelLogout.client_id,
            BackchannelLogout.uri,
            BackchannelLogout.sub,
            BackchannelLogout.sid,
            BackchannelLogout.jti,
        ),
    )
    return [Pending(*row) for row in rows]


class BackchannelWorker:
    """Sends due logout tokens from a thread that runs while some are pending.

    ``kick()`` starts it (or wakes it); it ends by itself when nothing is pending. A daemon
    thread only so that a forgotten worker never keeps a process alive: ``authserver serve``
    stops it at gunicorn's worker exit, which lets the POST in progress finish and releases
    the rest of its batch.
    """

    def __init__(
        self,
        database: Database,
        *,
        issuer: str,
        secret_key: str,
        key_fallbacks: tuple[str, ...] = (),
        retry_base: float = 2.0,
    ) -> None:
        self.database = database
        self.issuer = issuer
        self.secret_key = secret_key
        self.key_fallbacks = key_fallbacks
        self.retry_base = retry_base
        self.wakeup = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def kick(self) -> None:
        """Start the thread if it is not running, and wake it (after a commit, a first request)."""
        with self._lock:
            if self._stop.is_set():
                return
            self.wakeup.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="oidc-backchannel", daemon=True
                )
                self._thread.start()

    def request_stop(self) -> None:
        """Stop after the POST in progress; never start again (safe in a signal handler)."""
        self._stop.set()
        self.wakeup.set()

    def stop(self, timeout: float = TIMEOUT + 1) -> bool:
        """Stop and wait; True when the thread is gone (False: a POST outlived ``timeout``)."""
        self.request_stop()
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("back-channel logout still sending after %.0f s; leaving it", timeout)
            return False
        with self._lock:
            self._thread = None
        return True

    def run_once(self) -> tuple[int, int]:
        """Claim one batch of due logouts and POST them; return (sent, failed attempts).

        Between two POSTs a stop request is honoured: the rest of the batch is released.
        """
        token = secrets.token_hex(16)
        due = claim(self.database, token, utcnow())
        if not due:
            return 0, 0
        sent = failed = 0
        try:
            with self.database.session_scope() as session:
                kid, key = keys.signing_key(session, self.secret_key, fallbacks=self.key_fallbacks)
            for item in due:
                if self._stop.is_set():
                    break
                if not OUTBOX.renew(self.database, item.id, token, LEASE):
                    continue  # the lease ran out and another worker has it now
                try:
                    post(item.uri, self._token(item, kid, key))
                except Exception as exc:  # network, HTTP status: retried later
                    failed += 1
                    self._failed(item, token, exc)
                    continue
                sent += 1
                if not OUTBOX.mark_sent(self.database, item.id, token):
                    log.warning(
                        "back-channel logout %s sent but its claim was lost: "
                        "it may be sent twice (same jti)",
                        item.id,
                    )
        finally:
            OUTBOX.release(self.database, token, [item.id for item in due])
        return sent, failed

    def _token(self, item: Pending, kid: str, key: Any) -> str:
        return logout_token(
            issuer=self.issuer,
            client_id=item.client_id,
            sub=item.sub,
            sid=item.sid,
            kid=kid,
            key=key,
            now=int(time.time()),
            jti=item.jti,
        )

    def _retry_in(self, attempts: int) -> float:
        delay = min(self.retry_base * 2 ** min(attempts - 1, 32), 600.0)
        return delay * random.uniform(0.8, 1.2)

    def _failed(self, item: Pending, token: str, exc: Exception) -> None:
        recorded = OUTBOX.record_failure(
            self.database,
            item.id,
            token,
            error=f"{type(exc).__name__}: {str(exc)[:200]}",
            retry_in=self._retry_in,
            give_up=lambda attempts: attempts >= MAX_ATTEMPTS,
        )
        if recorded is None:
            return
        attempts, given_up = recorded
        log.warning(
            "back-channel logout %s to %s failed (attempt %d%s): %s",
            item.id,
            item.client_id,
            attempts,
            ", given up" if given_up else "",
            exc,
        )

    def next_due_in(self) -> float | None:
        """Seconds until a pending logout can be claimed (here or by another worker)."""
        return OUTBOX.next_due_in(self.database)

    def _run(self) -> None:
        outage = 0  # rounds in a row that failed on the database
        while not self._stop.is_set():
            self.wakeup.clear()
            try:
                while not self._stop.is_set() and self.run_once() != (0, 0):
                    pass  # batch after batch while some are due
                wait = self.next_due_in()
            except Exception:
                outage += 1
                # One traceback per outage; the following rounds only count.
                log.warning(
                    "back-channel logout round failed (database?); retrying",
                    exc_info=outage == 1,
                )
                base, cap = RETRY_DATABASE
                wait = min(base * 2 ** min(outage - 1, 16), cap)
            else:
                if outage:
                    log.warning("back-channel logout: database back after %d failed rounds", outage)
                outage = 0
                if wait is None:
                    with self._lock:
                        if not self.wakeup.is_set():  # no commit queued one meanwhile
                            self._thread = None
                            return
                    continue
            self.wakeup.wait(timeout=min(wait, 60.0) or 0.05)


def install_wakeup(database: Database, worker: BackchannelWorker) -> None:
    @event.listens_for(database.factory, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.info.pop(_FLAG, False):
            worker.kick()

    @event.listens_for(database.factory, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_FLAG, None)
