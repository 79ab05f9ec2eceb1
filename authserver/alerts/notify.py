"""Alert e-mails: a login from a new device, an account throttled after failures.

They go through the outbox in the login's own transaction: an alert never
delays or blocks a login, and SMTP being down loses none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import url_for
from sqlalchemy import insert

from authserver import db
from authserver.accounts import tokens
from authserver.alerts import events
from authserver.alerts.devices import known_device
from authserver.mail.outbox import enqueue
from authserver.mail.rendering import unrendered_row
from authserver.models import SecurityEvent, User, utcnow
from authserver.web import client_ip, settings, user_agent

NOT_ME = "not_me"
# The security event of a recovery: a passkey enrolled from an e-mailed link.
RECOVERY_KIND = "account_recovery"
NOT_ME_TTL = 7 * 24 * 3600
METHOD_LABELS = {"password": "mot de passe", "passkey": "clé d'accès (sans mot de passe)"}


SECURITY_EVENT = insert(SecurityEvent.__table__)


@dataclass(frozen=True)
class Site:
    """What an alert e-mail needs of the app, read without a request: the public address
    and the paths of its links (``build(endpoint, **values)``: url_for in a view, the app's
    URL map in the login fast path). Its words are the deliverer's (mail/rendering.py)."""

    base_url: str
    build: Callable[..., str]


@dataclass(frozen=True)
class NewDeviceAlert:
    """The rows of a new-device alert, written in the login's transaction, and its log line."""

    token: dict[str, Any]  # tokens.INSERT: the « Ce n'était pas moi » link
    mail: dict[str, Any]  # outbox.INSERT
    event: dict[str, Any]  # SECURITY_EVENT
    log_fields: dict[str, Any]  # events.emit("new_device_alert", ...) once committed

    def for_device(self, device_id: int) -> NewDeviceAlert:
        """The rows naming the new device, once its row is written (its id is known)."""
        return NewDeviceAlert(
            token={**self.token, "data": {**self.token["data"], "device_id": device_id}},
            mail=self.mail,
            event={**self.event, "details": {**self.event["details"], "device_id": device_id}},
            log_fields={**self.log_fields, "device": device_id},
        )


def new_device_alert(
    site: Site,
    *,
    user_id: int,
    username: str,
    email: str,
    device: dict[str, Any],
    method: str,
    now: datetime,
    recovery: bool = False,
) -> NewDeviceAlert:
    """The owner's e-mail, the security team's event (``device``: the new device's row, not
    written yet: ``for_device`` names it once it is)."""
    device_id = 0
    ip = device["last_ip"]
    token, token_row = tokens.new_token_row(
        purpose=NOT_ME,
        user_id=user_id,
        ttl=NOT_ME_TTL,
        data={"device_id": device_id, "ip": ip, "method": method},
        now=now,
    )
    # Queued as its facts: the deliverer puts them into words (mail/rendering.py).
    mail = unrendered_row(
        now,
        kind="new_device",
        to=email,
        subject="Nouvelle connexion à votre espace France Travail",
        template="new_device",
        user={"username": username},
        when=now,
        browser=device["browser"],
        system=device["system"],
        ip=ip,
        method=METHOD_LABELS.get(method, method),
        recovery=recovery,
        not_me_link=site.base_url + site.build("alerts.not_me", token=token),
        security_link=site.base_url + site.build("alerts.security_info"),
        forgot_link=site.base_url + site.build("accounts.forgot_password"),
    )
    event = {
        "created_at": now,
        "kind": RECOVERY_KIND if recovery else "new_device",
        "severity": "medium" if recovery else "low",
        "user_id": user_id,
        "ip": ip,
        "details": {
            "device_id": device_id,
            "browser": device["browser"],
            "system": device["system"],
            "method": method,
        },
        "status": "open",
        "updated_at": None,
    }
    log_fields = {
        "account": username,
        "ip": ip,
        "user_agent": device["user_agent"],
        "device": device_id,
        "outcome": "alert_sent",
        "browser": device["browser"],
        "system": device["system"],
        "method": method,
    }
    return NewDeviceAlert(token_row, mail, event, log_fields)


def account_throttled(user: User) -> None:
    """E-mail the owner that password logins are suspended for a while (caller commits)."""
    base = settings().base_url
    known = known_device(user.id)  # rare: only when a limit was just reached
    enqueue(
        kind="throttled",
        to=user.email,
        subject="Tentatives de connexion bloquées sur votre compte France Travail",
        template="throttled",
        user=user,
        when=utcnow(),
        ip=client_ip(),
        minutes=max(1, settings().throttle_window // 60),
        forgot_link=base + url_for("accounts.forgot_password"),
        security_link=base + url_for("alerts.security_info"),
    )
    db.session().add(
        SecurityEvent(
            kind="throttled",
            severity="medium",
            user_id=user.id,
            ip=client_ip(),
            details={"reason": "too_many_failures"},
        )
    )
    events.emit(
        "account_throttled",
        account=user.username,
        ip=client_ip(),
        user_agent=user_agent(),
        device=known.id if known else None,
        outcome="throttled",
    )
