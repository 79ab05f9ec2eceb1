"""What the helpdesk does to an account (issue 14), from the console or the command line.

Each action checks who may do it (:func:`permitted`), applies its effect, appends one row
to the append-only audit (``account_actions``: who, when, why, what) and tells the account's
owner by e-mail, all in the caller's transaction: the caller commits once, so the effect,
its audit row and its e-mail are stored together or not at all.

Actions need an app context and a request context (e-mails carry absolute links): the
console has its request; the command line opens one on the configured base URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import url_for
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from authserver.accounts import locking, recovery, service, ways_in
from authserver.alerts import events
from authserver.mail.outbox import enqueue
from authserver.models import (
    HELPDESK_ACTIONS,
    AccountAction,
    User,
    WebAuthnCredential,
    utcnow,
)
from authserver.plural import plural
from authserver.sessions import store
from authserver.sessions.staff import SECURITY_ROLES
from authserver.throttle import throttle
from authserver.web import settings

REASON_MAX = 2000
# The command line's actor role: an operator on the server's machine may do everything.
OPERATOR = "operator"

ACTION_LABELS = {
    "unlock": "Déverrouiller le compte",
    "lock": "Verrouiller le compte",
    "remove_passkey": "Supprimer cette clé d'accès",
    "remove_passkeys": "Supprimer toutes les clés d'accès",
    "force_password_reset": "Imposer un nouveau mot de passe",
    "resend_activation": "Renvoyer l'e-mail d'activation",
    "revoke_sessions": "Fermer toutes les sessions",
    "send_recovery_link": "Envoyer un lien pour créer une nouvelle clé d'accès",
    "delete": "Supprimer le compte",
}
DONE_LABELS = {
    "unlock": "Compte déverrouillé : son titulaire peut de nouveau se connecter.",
    "lock": "Compte verrouillé : ses sessions sont fermées.",
    "remove_passkey": "Clé d'accès supprimée.",
    "remove_passkeys": "Toutes les clés d'accès du compte sont supprimées.",
    "force_password_reset": "Un lien de réinitialisation du mot de passe a été envoyé.",
    "resend_activation": "Un nouvel e-mail d'activation a été envoyé.",
    "revoke_sessions": "Sessions du compte fermées.",
    "send_recovery_link": "Un lien pour créer une nouvelle clé d'accès a été envoyé.",
    "delete": "Compte supprimé.",
}
# What the owner's e-mail says was done (the reason stays in the audit: it may name a call,
# an identity check, an alert).
NOTICES = {
    "unlock": "votre compte a été déverrouillé : vous pouvez de nouveau vous connecter.",
    "lock": "votre compte a été verrouillé et toutes vos sessions ont été fermées.",
    "remove_passkey": "la clé d'accès « {detail} » a été supprimée de votre compte.",
    "remove_passkeys": "toutes les clés d'accès de votre compte ont été supprimées.",
    "revoke_sessions": "toutes les sessions ouvertes sur votre compte ont été fermées.",
}
# Counsellors help employers who lost a device or a link; locking, unlocking and deleting
# accounts belong to the security team (an unlock asked by telephone is a classic
# social-engineering route).
COUNSELOR_ACTIONS = frozenset(
    {
        "remove_passkey",
        "remove_passkeys",
        "force_password_reset",
        "resend_activation",
        "revoke_sessions",
        "send_recovery_link",
    }
)
CONSOLE_ACTIONS = tuple(a for a in HELPDESK_ACTIONS if a != "delete")


class Refused(Exception):
    """The action cannot apply; the message is the French sentence to show."""


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff account of the console, or the operator of the command line."""

    id: int | None
    label: str
    role: str

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(id=user.id, label=user.username, role=user.role)


@dataclass(frozen=True)
class Outcome:
    record: AccountAction
    message: str


def permitted(*, actor_role: str, action: str, target_role: str) -> bool:
    """May a member of ``actor_role`` apply ``action`` to an account of ``target_role``?"""
    if action not in HELPDESK_ACTIONS:
        return False
    if actor_role == OPERATOR:
        return True
    if actor_role in SECURITY_ROLES:
        return action != "delete" and (target_role != "admin" or actor_role == "admin")
    if actor_role == "counselor":
        return action in COUNSELOR_ACTIONS and target_role == "employer"
    return False


def perform(
    session: Session,
    *,
    target: User,
    actor: Actor,
    action: str,
    reason: str,
    passkey_id: int | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Apply ``action`` to ``target`` as ``actor``; append its audit row (caller commits)."""
    reason = (reason or "").strip()
    if action not in HELPDESK_ACTIONS:
        raise Refused("Action inconnue.")
    if not permitted(actor_role=actor.role, action=action, target_role=target.role):
        raise Refused("Votre rôle ne permet pas cette action sur ce compte.")
    if not reason:
        raise Refused("Indiquez le motif de l'action (il est conservé dans le journal).")
    if len(reason) > REASON_MAX:
        raise Refused(f"Le motif ne peut pas dépasser {REASON_MAX} caractères.")
    if actor.id == target.id and action in ("lock", "delete", "unlock"):
        raise Refused("Vous ne pouvez pas faire cette action sur votre propre compte.")
    now = now or utcnow()
    # Before the effect: ``delete`` takes the account's row away.
    user_id, username = target.id, target.username
    detail = _apply(session, target, action, passkey_id, now)
    record = AccountAction(
        user_id=user_id,
        username=username[:64],
        actor_id=actor.id,
        actor=actor.label[:100],
        action=action,
        reason=reason,
        detail=detail[:200],
        created_at=now,
    )
    session.add(record)
    events.after_commit(
        session,
        "helpdesk_action",
        user=username,
        action=action,
        actor=actor.label,
        detail=detail or None,
    )
    return Outcome(record=record, message=DONE_LABELS[action])


def _apply(
    session: Session, target: User, action: str, passkey_id: int | None, now: datetime
) -> str:
    """The action's effect and its e-mail; return the audit row's detail."""
    detail = ""
    if action == "unlock":
        # Locked by the security team, or only suspended after failed passwords (the
        # throttle): either way the owner may log in again, with a fresh failure count.
        if target.locked_at is not None:
            locking.unlock(session, target)
        else:
            detail = "compteur d'échecs de connexion remis à zéro"
        username_key, limits = target.username_key, throttle()
        events.call_after_commit(session, lambda: limits.account_released(username_key))
    elif action == "lock":
        try:
            revoked = locking.lock(session, target, now, reason="helpdesk_lock")
        except locking.AlreadyInState:
            raise Refused("Ce compte est déjà verrouillé.") from None
        detail = _sessions_detail(revoked)
    elif action in ("remove_passkey", "remove_passkeys"):
        detail = _remove_passkeys(
            session, target, passkey_id if action == "remove_passkey" else None
        )
    elif action == "force_password_reset":
        if target.activated_at is None:
            raise Refused("Ce compte n'est pas encore activé : renvoyez l'e-mail d'activation.")
        target.password_reset_required = True
        detail = _sessions_detail(store.revoke_all(session, target.id, "helpdesk_reset"))
        service.send_reset_link(target, by_helpdesk=True)
        return detail
    elif action == "resend_activation":
        if target.activated_at is not None:
            raise Refused("Ce compte est déjà activé.")
        service.send_activation(target)
        return detail
    elif action == "send_recovery_link":
        return _assisted_recovery(target)
    elif action == "revoke_sessions":
        detail = _sessions_detail(store.revoke_all(session, target.id, "helpdesk"))
    elif action == "delete":
        from authserver.accounts import profile

        if profile.named_by_audit(target):
            raise Refused(
                "Ce compte d'agent figure dans les journaux d'audit : verrouillez-le plutôt."
            )
        profile.delete_account(target, by_helpdesk=True)
        return detail
    _notify(target, action, detail, now)
    return detail


def _assisted_recovery(target: User) -> str:
    """Counsellor-assisted recovery: the caller who lost every passkey is matched against
    the identity checked at certification (by a counsellor or the online provider), so only
    a certified account gets a link this way; the link goes to the account's own address
    and its use always alerts (accounts/recovery.py)."""
    if target.certified_at is None:
        raise Refused(
            "Ce compte n'est pas certifié : son identité n'a jamais été vérifiée. Le titulaire "
            "peut utiliser « J'ai perdu ma clé d'accès » lui-même, ou demander d'abord sa "
            "certification."
        )
    if not recovery.may_recover(target):
        raise Refused("Ce compte ne peut pas se connecter (non activé ou verrouillé).")
    recovery.send_recovery_link(target, by_helpdesk=True)
    return f"identité certifiée le {target.certified_at:%d/%m/%Y}"


def _sessions_detail(revoked: int) -> str:
    return plural(revoked, "session fermée", "sessions fermées")


def _remove_passkeys(session: Session, target: User, passkey_id: int | None) -> str:
    rows = list(
        session.scalars(select(WebAuthnCredential).where(WebAuthnCredential.user_id == target.id))
    )
    if passkey_id is not None:
        chosen = [row for row in rows if row.id == passkey_id]
        if not chosen:
            raise Refused("Cette clé d'accès n'existe pas sur ce compte.")
    else:
        chosen = rows
        if not chosen:
            raise Refused("Ce compte n'a aucune clé d'accès.")
    if not ways_in.may_remove(
        has_password=target.password_hash is not None,
        passkeys=len(rows),
        passkeys_removed=len(chosen),
    ):
        raise Refused(
            ways_in.LAST_WAY_IN + " Imposez d'abord un nouveau mot de passe, ou faites "
            "enregistrer une nouvelle clé d'accès."
        )
    session.execute(
        delete(WebAuthnCredential)
        .where(WebAuthnCredential.id.in_([row.id for row in chosen]))
        .execution_options(synchronize_session=False)
    )
    # A passkey that logged this browser in must not leave a session behind either.
    store.revoke_all(session, target.id, "helpdesk_passkeys")
    return ", ".join(row.name for row in chosen)


def _notify(target: User, action: str, detail: str, now: datetime) -> None:
    base = settings().base_url
    enqueue(
        kind=f"helpdesk_{action}",
        to=target.email,
        subject="Une action a été effectuée sur votre compte France Travail",
        template="helpdesk_notice",
        user=target,
        what=NOTICES[action].format(detail=detail),
        when=now,
        forgot_link=base + url_for("accounts.forgot_password"),
        security_link=base + url_for("alerts.security_info"),
    )


def history(session: Session, user_id: int, limit: int = 50) -> list[AccountAction]:
    """The account's audit rows, newest first."""
    return list(
        session.scalars(
            select(AccountAction)
            .where(AccountAction.user_id == user_id)
            .order_by(AccountAction.id.desc())
            .limit(limit)
        )
    )
