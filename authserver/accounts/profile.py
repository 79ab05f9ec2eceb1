"""Mon compte: the « droit d'accès et de rectification » — edit, e-mail change, export, deletion.

Callers commit. An e-mail change takes effect only when the link sent to the new
address is opened, and the old address is told; deletion removes the account's
sessions, passkeys and devices, while login events stay for the security team
(their user id is cleared, the identifiant is kept in ``username_attempt``).
"""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import select, update

from authserver import db
from authserver.accounts import tokens
from authserver.accounts.validation import InvalidField, email_key
from authserver.alerts import events
from authserver.establishments import service as establishments
from authserver.mail.outbox import enqueue
from authserver.models import (
    AccountAction,
    AuthSession,
    CertificationRequest,
    Device,
    LoginEvent,
    Membership,
    SecurityAction,
    User,
    WebAuthnCredential,
    utcnow,
)
from authserver.sessions import store
from authserver.web import client_ip, settings

EMAIL_CHANGE = "email_change"
EMAIL_CHANGE_TTL = 24 * 3600


def update_profile(
    user: User, *, civility: str, last_name: str, first_name: str, phone: str
) -> None:
    user.civility = civility
    user.last_name = last_name
    user.first_name = first_name
    user.phone = phone


SAME_EMAIL = "C'est déjà l'adresse e-mail de votre compte : indiquez une autre adresse."


def request_email_change(user: User, new_email: str) -> None:
    """Send the confirmation link; ``InvalidField`` if it is the account's address already."""
    if email_key(new_email) == user.email_key:
        raise InvalidField(SAME_EMAIL)
    token = tokens.issue(
        db.session(),
        purpose=EMAIL_CHANGE,
        user_id=user.id,
        ttl=EMAIL_CHANGE_TTL,
        data={"email": new_email},
        supersede=True,
    )
    base = settings().base_url
    enqueue(
        kind="email_change_confirm",
        to=new_email,
        subject="Confirmez votre nouvelle adresse e-mail France Travail",
        template="email_change_confirm",
        user=user,
        new_email=new_email,
        link=base + url_for("accounts.confirm_email", token=token),
    )
    enqueue(
        kind="email_change_notice",
        to=user.email,
        subject="Changement d'adresse e-mail demandé sur votre compte France Travail",
        template="email_change_notice",
        user=user,
        new_email=new_email,
        when=utcnow(),
        forgot_link=base + url_for("accounts.forgot_password"),
    )


def confirm_email_change(token: str) -> User:
    session = db.session()
    consumed = tokens.consume(session, token, EMAIL_CHANGE)
    user = session.get(User, consumed.user_id)
    if user is None or not consumed.data or "email" not in consumed.data:
        raise tokens.TokenInvalid()
    events.after_commit(session, "email_changed", account=user.username, ip=client_ip())
    user.email = str(consumed.data["email"])
    user.email_key = email_key(user.email)
    return user


def export(user: User) -> dict[str, Any]:
    """Everything we hold about the account, for the owner."""
    session = db.session()
    membership = session.scalar(select(Membership).where(Membership.user_id == user.id))
    passkeys = session.scalars(
        select(WebAuthnCredential).where(WebAuthnCredential.user_id == user.id)
    )
    devices = session.scalars(select(Device).where(Device.user_id == user.id))
    sessions = session.scalars(
        select(AuthSession).where(AuthSession.user_id == user.id).order_by(AuthSession.created_at)
    )
    logins = session.scalars(
        select(LoginEvent)
        .where(LoginEvent.user_id == user.id)
        .order_by(LoginEvent.created_at.desc())
        .limit(1000)
    )
    certifications = session.scalars(
        select(CertificationRequest).where(CertificationRequest.user_id == user.id)
    )
    iso = lambda moment: moment.isoformat() if moment else None  # noqa: E731
    return {
        "compte": {
            "identifiant": user.username,
            "civilite": user.civility,
            "nom": user.last_name,
            "prenom": user.first_name,
            "email": user.email,
            "telephone": user.phone,
            "cree_le": iso(user.created_at),
            "active_le": iso(user.activated_at),
            "certifie_le": iso(user.certified_at),
            "cgu_version": user.cgu_version,
            "cgu_acceptees_le": iso(user.cgu_accepted_at),
        },
        "etablissement": (
            {
                "siret": membership.establishment.siret,
                "nom": membership.establishment.name,
                "statut": membership.status,
                "role": membership.role,
            }
            if membership
            else None
        ),
        "certifications": [
            {"methode": c.method, "statut": c.status, "demandee_le": iso(c.created_at)}
            for c in certifications
        ],
        "cles_d_acces": [
            {
                "nom": p.name,
                "creee_le": iso(p.created_at),
                "derniere_utilisation": iso(p.last_used_at),
            }
            for p in passkeys
        ],
        "appareils": [
            {
                "navigateur": d.browser,
                "systeme": d.system,
                "premiere_connexion": iso(d.first_seen_at),
                "derniere_connexion": iso(d.last_seen_at),
                "derniere_ip": d.last_ip,
            }
            for d in devices
        ],
        "sessions": [
            {
                "debut": iso(s.created_at),
                "methode": s.method,
                "ip": s.ip,
                "revoquee_le": iso(s.revoked_at),
            }
            for s in sessions
        ],
        "connexions": [
            {
                "date": iso(e.created_at),
                "methode": e.method,
                "resultat": e.outcome,
                "motif": e.reason,
                "ip": e.ip,
            }
            for e in logins
        ],
    }


STAFF_DELETION_REFUSED = (
    "Ce compte d'agent France Travail (sécurité, conseiller ou administrateur) figure dans les "
    "journaux d'audit : il ne peut pas être supprimé depuis « Mon compte ». Pour le fermer, "
    "demandez son verrouillage à l'équipe sécurité."
)


def deletion_refused(user: User) -> str | None:
    """Why the account cannot delete itself (a French sentence), or None if it can.

    Staff accounts are named by the audit trails: ``security_actions.actor_id`` (append-only,
    so the reference cannot even be cleared) and ``certification_requests.decided_by_id``
    (who certified an account). Deleting them would fail or erase who did what.
    """
    if user.role != "employer":
        return STAFF_DELETION_REFUSED
    return STAFF_DELETION_REFUSED if named_by_audit(user) else None


def named_by_audit(user: User) -> bool:
    """Does an audit trail name ``user`` as the one who acted (console, certification,
    helpdesk)? Such an account is locked, never deleted."""
    session = db.session()
    trails = (
        select(SecurityAction.id).where(SecurityAction.actor_id == user.id),
        select(CertificationRequest.id).where(CertificationRequest.decided_by_id == user.id),
        select(AccountAction.id).where(AccountAction.actor_id == user.id),
    )
    return any(session.scalar(query.limit(1)) is not None for query in trails)


def delete_account(user: User, *, by_helpdesk: bool = False) -> None:
    session = db.session()
    # The administrator role goes to a successor, the certification audit stays (detached).
    events.after_commit(
        session,
        "account_deleted",
        account=user.username,
        user_id=user.public_id,
        ip=client_ip(),
        by_helpdesk=by_helpdesk,
    )
    establishments.before_account_deletion(user)
    store.revoke_all(session, user.id, "account_deleted")
    session.execute(
        update(LoginEvent)
        .where(LoginEvent.user_id == user.id)
        .values(username_attempt=user.username[:64])
    )
    enqueue(
        kind="account_deleted",
        to=user.email,
        subject="Votre compte France Travail a été supprimé",
        template="account_deleted",
        user=user,
        when=utcnow(),
        by_helpdesk=by_helpdesk,
    )
    session.delete(user)
