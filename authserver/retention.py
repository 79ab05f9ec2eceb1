"""Retention (issue 15; RGPD art. 5-1-e, CNIL: connection logs kept 6 months to a year).

What goes, and when (days, settings ``AUTHSERVER_RETENTION_*``):

- login events: deleted after ``login_events`` (180);
- security events: deleted after ``security_events`` (365), unless the security team acted
  on them (their append-only audit refers to them: those are kept, pseudonymised);
- IP addresses of login events, security events and devices: pseudonymised after ``ip``
  (90): replaced by ``~`` and 12 hex digits of an HMAC under the secret key, so the console
  can still tell that two old events came from one address, never which; devices not seen
  since then also lose their raw user agent (their browser and system names stay);
- sent e-mails (their bodies hold names and links) and delivered or abandoned back-channel
  logout notices: deleted after ``mail`` (30).

The audits (``security_actions``, ``account_actions``, certification rows) are not purged.
Everything runs in small batches, each its own short transaction with a pause between them,
so that logins never queue long on SQLite's write lock behind a purge. ``purge`` is run by
``authserver retention purge`` and, once an hour, by each server's detector thread.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from authserver.db import Database
from authserver.models import (
    BackchannelLogout,
    Device,
    LoginEvent,
    OutboxMail,
    SecurityAction,
    SecurityEvent,
    utcnow,
)

BATCH = 2000
PAUSE = 0.01  # seconds between two batches at least: other writers take the lock meanwhile
YIELD = 8.0  # and this many times the batch's own duration
# PostgreSQL works on after a batch's commit (WAL, then autovacuum of the deleted rows): its
# batches rest twice as long. Measured (bench.retention_purge --backend pg, 10 M rows): with
# 8, login p99 went from 43.7 to 61.9 ms during the purge (1.4x; the goal is 1.2x).
YIELD_POSTGRESQL = 16.0


def rest_after(batch_seconds: float, *, sqlite: bool, pause: float = PAUSE) -> float:
    """How long the purge rests after a batch that took ``batch_seconds``."""
    return max(pause, (YIELD if sqlite else YIELD_POSTGRESQL) * batch_seconds)


PSEUDONYM_PREFIX = "~"


@dataclass(frozen=True)
class Policy:
    login_events: int = 180
    security_events: int = 365
    ip: int = 90
    mail: int = 30

    @classmethod
    def of(cls, settings: Any) -> Policy:
        return cls(
            login_events=settings.retention_login_events,
            security_events=settings.retention_security_events,
            ip=settings.retention_ip,
            mail=settings.retention_mail,
        )


def pseudonym(secret_key: str, ip: str) -> str:
    """The same address always gives the same pseudonym (under one key); not reversible."""
    digest = hmac.new(secret_key.encode(), b"ip:" + ip.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:12]


def _in_batches(database: Database, step: Callable[[Session], int], pause: float) -> int:
    """Run ``step`` (one batch, returns rows touched) until a batch touches fewer than BATCH.

    Between two batches it rests (``rest_after``) 8 times as long as the batch took, 16 on
    PostgreSQL, ``pause`` at least: the purge holds the write lock and a core at most a ninth
    of the time, so logins keep their pace even while a large backlog goes
    (bench/retention_purge.py).
    """
    total = 0
    while True:
        started = time.monotonic()
        with database.session_scope() as session:
            done = step(session)
        total += done
        if done < BATCH:
            return total
        time.sleep(rest_after(time.monotonic() - started, sqlite=database.is_sqlite, pause=pause))


def _delete_older(
    model: Any, column: Any, cutoff: datetime, *extra: Any
) -> Callable[[Session], int]:
    def step(session: Session) -> int:
        ids = select(model.id).where(column < cutoff, *extra).limit(BATCH)
        chosen = list(session.scalars(ids))
        if not chosen:
            return 0
        session.execute(
            delete(model).where(model.id.in_(chosen)).execution_options(synchronize_session=False)
        )
        return len(chosen)

    return step


def _pseudonymise(
    model: Any,
    ip_column: str,
    time_column: Any,
    cutoff: datetime,
    secret_key: str,
    also: dict[str, Any] | None = None,
) -> Callable[[Session], int]:
    column = getattr(model, ip_column)

    def step(session: Session) -> int:
        rows = session.execute(
            select(model.id, column)
            .where(
                time_column < cutoff,
                column != "",
                ~column.startswith(PSEUDONYM_PREFIX),
            )
            .limit(BATCH)
        ).all()
        if rows:
            # One statement for the batch (executemany), not one round trip per row.
            table = model.__table__
            session.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({ip_column: bindparam("pseudonym"), **(also or {})}),
                [{"row_id": row_id, "pseudonym": pseudonym(secret_key, ip)} for row_id, ip in rows],
            )
        return len(rows)

    return step


def purge(
    database: Database,
    policy: Policy,
    secret_key: str,
    now: datetime | None = None,
    *,
    pause: float = PAUSE,
) -> dict[str, int]:
    """Apply the policy; return how many rows each step touched."""
    now = now or utcnow()
    moment = now

    def days(count: int) -> datetime:
        return moment - timedelta(days=count)

    acted_on = exists().where(SecurityAction.alert_id == SecurityEvent.id)
    steps: dict[str, Callable[[Session], int]] = {
        "login_events_deleted": _delete_older(
            LoginEvent, LoginEvent.created_at, days(policy.login_events)
        ),
        "security_events_deleted": _delete_older(
            SecurityEvent, SecurityEvent.created_at, days(policy.security_events), ~acted_on
        ),
        "login_event_ips_pseudonymised": _pseudonymise(
            LoginEvent, "ip", LoginEvent.created_at, days(policy.ip), secret_key
        ),
        "security_event_ips_pseudonymised": _pseudonymise(
            SecurityEvent, "ip", SecurityEvent.created_at, days(policy.ip), secret_key
        ),
        "device_ips_pseudonymised": _pseudonymise(
            Device,
            "last_ip",
            Device.last_seen_at,
            days(policy.ip),
            secret_key,
            also={"user_agent": ""},
        ),
        "sent_mails_deleted": _delete_older(
            OutboxMail, OutboxMail.sent_at, days(policy.mail), OutboxMail.status == "sent"
        ),
        "logout_notices_deleted": _delete_older(
            BackchannelLogout,
            BackchannelLogout.created_at,
            days(policy.mail),
            or_(BackchannelLogout.status == "sent", BackchannelLogout.status == "failed"),
        ),
    }
    return {name: _in_batches(database, step, pause) for name, step in steps.items()}


def oldest(session: Session) -> dict[str, datetime | None]:
    """The oldest row kept of each purged table (/readyz, /metrics): a purge that stopped
    running shows as an age beyond the policy."""
    return {
        "login_events": session.scalar(select(func.min(LoginEvent.created_at))),
        "security_events": session.scalar(select(func.min(SecurityEvent.created_at))),
        "sent_mails": session.scalar(
            select(func.min(OutboxMail.sent_at)).where(OutboxMail.status == "sent")
        ),
    }
