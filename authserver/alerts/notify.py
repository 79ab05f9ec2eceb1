"""Alert e-mails: a login from a new device, an account throttled after failures.

They go through the outbox in the login's own transaction: an alert never
delays or blocks a login, and SMTP being down loses none.
"""

from __future__ import annotations

from flask import url_for

from authserver import db
from authserver.accounts import tokens
from authserver.alerts import events
from authserver.alerts.devices import DeviceLogin, known_device
from authserver.mail.outbox import enqueue
from authserver.models import SecurityEvent, User, utcnow
from authserver.web import client_ip, settings, user_agent

NOT_ME = "not_me"
NOT_ME_TTL = 7 * 24 * 3600
METHOD_LABELS = {"password": "mot de passe", "passkey": "clé d'accès (sans mot de passe)"}


def new_device_login(user: User, device_login: DeviceLogin, method: str) -> None:
    """E-mail the owner and raise an alert for the security team (caller commits)."""
    device = device_login.device
    session = db.session()
    token = tokens.issue(
        session,
        purpose=NOT_ME,
        user_id=user.id,
        ttl=NOT_ME_TTL,
        data={"device_id": device.id, "ip": client_ip(), "method": method},
    )
    base = settings().base_url
    enqueue(
        kind="new_device",
        to=user.email,
        subject="Nouvelle connexion à votre espace France Travail",
        template="new_device",
        user=user,
        when=utcnow(),
        browser=device.browser,
        system=device.system,
        ip=client_ip(),
        method=METHOD_LABELS.get(method, method),
        not_me_link=base + url_for("alerts.not_me", token=token),
        security_link=base + url_for("alerts.security_info"),
        forgot_link=base + url_for("accounts.forgot_password"),
    )
    session.add(
        SecurityEvent(
            kind="new_device",
            severity="low",
            user_id=user.id,
            ip=client_ip(),
            details={
                "device_id": device.id,
                "browser": device.browser,
                "system": device.system,
                "method": method,
            },
        )
    )
    events.emit(
        "new_device_alert",
        account=user.username,
        ip=client_ip(),
        user_agent=user_agent(),
        device=device.id,
        outcome="alert_sent",
        browser=device.browser,
        system=device.system,
        method=method,
    )


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
