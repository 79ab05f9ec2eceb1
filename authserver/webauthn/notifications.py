"""E-mails telling the owner that a passkey was added to or removed from the account."""

from __future__ import annotations

from flask import url_for

from authserver import db
from authserver.alerts import events
from authserver.mail.outbox import enqueue
from authserver.models import User, WebAuthnCredential, utcnow
from authserver.web import client_ip, settings


def _notify(user: User, passkey: WebAuthnCredential, *, added: bool) -> None:
    base = settings().base_url
    events.after_commit(
        db.session(),
        "passkey_added" if added else "passkey_removed",
        account=user.username,
        ip=client_ip(),
        passkey=passkey.name,
    )
    enqueue(
        kind="passkey_added" if added else "passkey_removed",
        to=user.email,
        subject=(
            "Une clé d'accès a été ajoutée à votre compte France Travail"
            if added
            else "Une clé d'accès a été supprimée de votre compte France Travail"
        ),
        template="passkey_changed",
        user=user,
        passkey_name=passkey.name,
        added=added,
        when=utcnow(),
        ip=client_ip(),
        passkeys_link=base + url_for("passkeys.manage"),
        forgot_link=base + url_for("accounts.forgot_password"),
        security_link=base + url_for("alerts.security_info"),
    )


def passkey_added(user: User, passkey: WebAuthnCredential) -> None:
    _notify(user, passkey, added=True)


def passkey_removed(user: User, passkey: WebAuthnCredential) -> None:
    _notify(user, passkey, added=False)
