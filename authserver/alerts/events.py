"""Login events: one row per attempt, and one JSON line per event for a SIEM.

The JSON line never carries a password, token or cookie value: only who, when,
from where, how, and the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from authserver import db
from authserver.alerts import ecs
from authserver.alerts import security_log as log_routing
from authserver.metrics import ALERTS, LOGINS
from authserver.models import LoginEvent, User, utcnow
from authserver.web import client_ip, user_agent

security_log = logging.getLogger("authserver.security")
RECORD = insert(LoginEvent.__table__)


def init_security_log(app: Flask) -> None:
    """Security events go where the app's settings say (AUTHSERVER_SECURITY_LOG)."""
    log_routing.init_app(app)


ALERT_EVENTS = {
    "new_device_alert",
    "account_throttled",
    "not_me_report",
    "passkey_cloned",
    "burst_alert",
}


def emit(event_type: str, *, log_target: logging.Handler | None = None, **fields: Any) -> None:
    """The event's JSON line; ``log_target`` names the app's target when there is no app
    context (the login fast path)."""
    if event_type in ALERT_EVENTS:
        ALERTS.labels(event_type).inc()
    if not log_routing.wanted(log_target):
        return
    doc = ecs.document(event_type, fields, utcnow())
    extra: dict[str, Any] = {log_routing.DOC: doc}
    if log_target:
        extra[log_routing.TARGET] = log_target
    security_log.info("%s", _Unsealed(doc), extra=extra)


class _Unsealed:
    """The document as a log message, serialised only if a listener other than the sealing
    targets reads it (a test's handler)."""

    __slots__ = ("doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def __str__(self) -> str:
        return ecs.canonical(self.doc)


def record_login(
    *,
    method: str,
    outcome: str,
    reason: str = "",
    user: User | None = None,
    username_attempt: str = "",
    device_id: int | None = None,
) -> None:
    """Insert a login event in the caller's transaction and write its log line.

    A Core INSERT rather than the unit of work: this runs on every login attempt.
    """
    row = login_row(
        method=method,
        outcome=outcome,
        reason=reason,
        user_id=user.id if user else None,
        username_attempt=username_attempt,
        ip=client_ip(),
        agent=user_agent(),
        device_id=device_id,
    )
    db.session().execute(RECORD, row)
    announce_login(row, user.username if user else None)


def login_row(
    *,
    method: str,
    outcome: str,
    reason: str,
    user_id: int | None,
    username_attempt: str,
    ip: str,
    agent: str,
    device_id: int | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The row of ``RECORD`` for a login attempt (also run by the login fast path)."""
    return {
        "created_at": now or utcnow(),
        "user_id": user_id,
        "username_attempt": username_attempt[:64],
        "ip": ip,
        "user_agent": agent,
        "method": method,
        "outcome": outcome,
        "reason": reason,
        "device_id": device_id,
    }


def announce_login(
    row: dict[str, Any], account: str | None, log_target: logging.Handler | None = None
) -> None:
    """The metric and the JSON line of a login whose row was written (after the commit is
    fine: the line never says more than the row)."""
    LOGINS.labels(row["method"], row["outcome"]).inc()
    emit(
        "login",
        log_target=log_target,
        account=account,
        username_attempt=row["username_attempt"] if account is None else None,
        ip=row["ip"],
        user_agent=row["user_agent"],
        device=row["device_id"],
        method=row["method"],
        outcome=row["outcome"],
        reason=row["reason"] or None,
    )


_PENDING = "authserver.security_events"


def after_commit(session: Session, event_type: str, **fields: Any) -> None:
    """Write the event's line once ``session`` commits (never for a change rolled back).
    For changes made in a transaction: the line must not tell of what did not happen."""
    session.info.setdefault(_PENDING, []).append((event_type, fields))


_CALLS = "authserver.after_commit_calls"


def call_after_commit(session: Session, call: Callable[[], None]) -> None:
    """Run ``call`` once ``session`` commits: for a write elsewhere (the throttle's store)
    that must neither happen for a change rolled back nor wait, on SQLite, for the write
    lock this very transaction holds."""
    session.info.setdefault(_CALLS, []).append(call)


@event.listens_for(Session, "after_commit")
def _emit_committed(session: Session) -> None:
    for event_type, fields in session.info.pop(_PENDING, ()):
        emit(event_type, **fields)
    for call in session.info.pop(_CALLS, ()):
        call()


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_CALLS, None)
