"""Login events: one row per attempt, and one JSON line per event for a SIEM.

The JSON line never carries a password, token or cookie value: only who, when,
from where, how, and the outcome.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask
from sqlalchemy import insert

from authserver import db
from authserver.metrics import ALERTS, LOGINS
from authserver.models import LoginEvent, User, utcnow
from authserver.web import client_ip, user_agent

security_log = logging.getLogger("authserver.security")
_RECORD = insert(LoginEvent.__table__)


def init_security_log(app: Flask) -> None:
    """Security events go where the app's settings say (AUTHSERVER_SECURITY_LOG)."""
    from authserver.alerts.security_log import init_app

    init_app(app)


ALERT_EVENTS = {
    "new_device_alert",
    "account_throttled",
    "not_me_report",
    "passkey_cloned",
    "burst_alert",
}


def emit(event_type: str, **fields: Any) -> None:
    if event_type in ALERT_EVENTS:
        ALERTS.labels(event_type).inc()
    record = {"event": event_type, "time": utcnow().isoformat(), **fields}
    security_log.info(json.dumps(record, ensure_ascii=False, default=str))


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
    ip = client_ip()
    agent = user_agent()
    attempt = username_attempt[:64]
    db.session().execute(
        _RECORD,
        {
            "created_at": utcnow(),
            "user_id": user.id if user else None,
            "username_attempt": attempt,
            "ip": ip,
            "user_agent": agent,
            "method": method,
            "outcome": outcome,
            "reason": reason,
            "device_id": device_id,
        },
    )
    LOGINS.labels(method, outcome).inc()
    emit(
        "login",
        account=user.username if user else None,
        username_attempt=attempt if user is None else None,
        ip=ip,
        user_agent=agent,
        device=device_id,
        method=method,
        outcome=outcome,
        reason=reason or None,
    )
