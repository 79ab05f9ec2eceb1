"""Attaching an establishment, memberships, certification. Callers commit.

Rules (from the seed): the first *certified* user of an establishment becomes
its administrator; a later user attaching the same SIRET waits until the
administrator grants or refuses; an administrator can remove a collaborator,
whose sessions lose the establishment's claims at once (claims are read live).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta

from flask import url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from authserver import db
from authserver.alerts import events
from authserver.establishments import directory as directory_module
from authserver.establishments.identity import OUTCOME_LABELS
from authserver.mail.outbox import enqueue
from authserver.models import CertificationRequest, Establishment, Membership, User, utcnow
from authserver.web import settings


def membership_of(user: User) -> Membership | None:
    return db.session().scalar(select(Membership).where(Membership.user_id == user.id))


def active_membership(user: User) -> Membership | None:
    membership = membership_of(user)
    return membership if membership is not None and membership.status == "active" else None


def administrator_of(establishment_id: int) -> Membership | None:
    return db.session().scalar(
        select(Membership).where(
            Membership.establishment_id == establishment_id,
            Membership.role == "admin",
            Membership.status == "active",
        )
    )


def _establishment_row(found: directory_module.Establishment) -> Establishment:
    session = db.session()
    row = session.scalar(select(Establishment).where(Establishment.siret == found.siret))
    if row is not None:
        return row
    row = Establishment(
        siret=found.siret,
        siren=found.siren,
        name=found.name,
        address=found.address,
        postal_code=found.postal_code,
        city=found.city,
        naf_code=found.naf_code,
        naf_label=found.naf_label,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # Another user attached the same SIRET at the same moment: use theirs.
        session.rollback()
        existing = session.scalar(select(Establishment).where(Establishment.siret == found.siret))
        assert existing is not None
        return existing
    return row


class AlreadyAttached(Exception):
    """The user's account is already an active member of another establishment.

    ``str(exc)`` is the French sentence for the page. Changing establishment is an explicit
    step (``leave``), never a side effect of typing another SIRET: an administrator who did
    that by mistake would otherwise hand the espace over without knowing it.
    """

    def __init__(self, membership: Membership) -> None:
        establishment = membership.establishment
        super().__init__(
            f"Votre compte est déjà rattaché à l'établissement {establishment.name} "
            f"(SIRET {establishment.siret}). Pour rattacher un autre établissement, "
            "quittez d'abord celui-ci (« Quitter l'établissement » dans votre espace)."
        )
        self.membership = membership


def attach(user: User, found: directory_module.Establishment) -> Membership:
    """Link the user to the establishment: active, or pending its administrator's decision.

    Confirming again the establishment the user already belongs to (active or pending) changes
    nothing: not the role, not the date, and no second e-mail to the administrator. A pending
    request for another establishment is replaced; an active membership of another one is
    refused with ``AlreadyAttached``. With no administrator yet, a user who is already
    certified becomes the administrator (« the first certified user »).
    """
    session = db.session()
    membership = membership_of(user)
    if membership is not None and membership.status in ("active", "pending"):
        if membership.establishment.siret == found.siret:
            return membership
        if membership.status == "active":
            raise AlreadyAttached(membership)
    establishment = _establishment_row(found)
    admin = administrator_of(establishment.id)
    status = "pending" if admin is not None and admin.user_id != user.id else "active"
    if membership is None:
        membership = Membership(user_id=user.id)
        session.add(membership)
    membership.establishment_id = establishment.id
    membership.establishment = establishment
    membership.role = "admin" if admin is None and user.certified_at is not None else "member"
    membership.status = status
    membership.created_at = utcnow()
    membership.decided_at = None
    membership.decided_by_id = None
    # users.siret is the claim portal services read: set only while the membership is active.
    user.siret = establishment.siret if status == "active" else None
    if admin is not None and status == "pending":
        _mail_request_to(admin.user, membership)
    session.flush()
    if membership.role == "admin":
        _notify_waiting_requests(membership)
    return membership


def _mail_request_to(admin: User, request: Membership) -> None:
    enqueue(
        kind="membership_request",
        to=admin.email,
        subject="Un collaborateur demande l'accès à l'espace de votre établissement",
        template="membership_request",
        admin=admin,
        requester=request.user,
        establishment=request.establishment,
        link=settings().base_url + url_for("establishments.collaborators"),
    )


def _waiting_requests(establishment_id: int) -> list[Membership]:
    return list(
        db.session().scalars(
            select(Membership)
            .where(Membership.establishment_id == establishment_id, Membership.status == "pending")
            .order_by(Membership.created_at, Membership.id)
        )
    )


def _notify_waiting_requests(admin: Membership) -> None:
    """A new administrator is told of the requests already waiting (none are stranded)."""
    for request in _waiting_requests(admin.establishment_id):
        _mail_request_to(admin.user, request)


def _oldest_certified_member(establishment_id: int, *, besides: int) -> Membership | None:
    return db.session().scalar(
        select(Membership)
        .join(User, Membership.user_id == User.id)
        .where(
            Membership.establishment_id == establishment_id,
            Membership.status == "active",
            Membership.id != besides,
            User.certified_at.is_not(None),
        )
        .order_by(Membership.created_at, Membership.id)
        .limit(1)
    )


def hand_over(leaving: Membership) -> Membership | None:
    """The administrator ``leaving`` goes (removed, left, account deleted): who takes over.

    The oldest certified active member becomes administrator and is told of the waiting
    requests. With no certified member left, the establishment is back where it started
    (no administrator: the next member to be certified becomes one), and the waiting requests
    are granted, as attaching now would be: nobody is left who could decide them.
    Return the new administrator, if any.
    """
    if leaving.role != "admin":
        return None
    _membership_event(leaving, "admin_role_handed_over", None)
    leaving.role = "member"
    establishment_id = leaving.establishment_id
    successor = _oldest_certified_member(establishment_id, besides=leaving.id)
    if successor is not None:
        _membership_event(successor, "admin_role_received", None)
        successor.role = "admin"
        db.session().flush()
        _notify_waiting_requests(successor)
        return successor
    now = utcnow()
    for request in _waiting_requests(establishment_id):
        if request.id == leaving.id:
            continue
        request.status = "active"
        request.decided_at = now
        request.decided_by_id = None
        request.user.siret = request.establishment.siret
    return None


def leave(user: User) -> Membership:
    """The user quits their establishment (explicit « Quitter l'établissement »)."""
    membership = membership_of(user)
    if membership is None or membership.status not in ("active", "pending"):
        raise LookupError("no establishment to leave")
    _membership_event(membership, "left", user)
    hand_over(membership)
    membership.status = "removed"
    membership.decided_at = utcnow()
    membership.decided_by_id = user.id
    user.siret = None
    return membership


def before_account_deletion(user: User) -> None:
    """The account is about to be deleted (its membership goes with it).

    Its administrator role, if any, goes to a successor; its pending certification requests
    are closed; its certification rows stay as the audit of who certified it, detached from
    the account (the database sets ``user_id`` NULL) with its identifiant and SIRET.
    """
    membership = membership_of(user)
    if membership is not None and membership.status == "active":
        hand_over(membership)
    close_pending_requests(user, CLOSED_DELETED)
    siret = membership.establishment.siret if membership is not None else user.siret
    for row in db.session().scalars(
        select(CertificationRequest).where(CertificationRequest.user_id == user.id)
    ):
        row.account_username = user.username[:64]
        row.account_siret = siret
        row.user_id = None
        row.user = None


def decide_membership(admin: User, membership: Membership, *, grant: bool) -> None:
    _membership_event(membership, "granted" if grant else "refused", admin)
    membership.status = "active" if grant else "refused"
    membership.decided_at = utcnow()
    membership.decided_by_id = admin.id
    membership.user.siret = membership.establishment.siret if grant else None
    enqueue(
        kind="membership_decision",
        to=membership.user.email,
        subject=(
            "Votre accès à l'espace de l'établissement a été accordé"
            if grant
            else "Votre demande d'accès à l'espace de l'établissement a été refusée"
        ),
        template="membership_decision",
        user=membership.user,
        establishment=membership.establishment,
        granted=grant,
        link=settings().base_url + url_for("establishments.espace"),
    )


def _membership_event(membership: Membership, change: str, actor: User | None) -> None:
    events.after_commit(
        db.session(),
        "membership_changed",
        actor=actor.username if actor else None,
        account=membership.user.username,
        change=change,
        siret=membership.establishment.siret,
    )


def remove_member(admin: User, membership: Membership) -> None:
    _membership_event(membership, "removed", admin)
    hand_over(membership)
    membership.status = "removed"
    membership.decided_at = utcnow()
    membership.decided_by_id = admin.id
    membership.user.siret = None


def members_of(establishment_id: int) -> list[Membership]:
    return list(
        db.session().scalars(
            select(Membership)
            .where(Membership.establishment_id == establishment_id)
            .order_by(Membership.created_at)
        )
    )


# --- Certification ------------------------------------------------------------------------


def latest_certification(user: User) -> CertificationRequest | None:
    return db.session().scalar(
        select(CertificationRequest)
        .where(CertificationRequest.user_id == user.id)
        .order_by(CertificationRequest.id.desc())
        .limit(1)
    )


CLOSED_CERTIFIED = "Sans objet : le compte a été certifié par une autre démarche."
CLOSED_DELETED = "Sans objet : le compte a été supprimé."


def close_pending_requests(user: User, reason: str, *, besides: int | None = None) -> int:
    """Close the user's pending requests (status ``abandoned`` with ``reason``); return how many."""
    statement = select(CertificationRequest).where(
        CertificationRequest.user_id == user.id, CertificationRequest.status == "pending"
    )
    if besides is not None:
        statement = statement.where(CertificationRequest.id != besides)
    now = utcnow()
    closed = 0
    for other in db.session().scalars(statement):
        other.status = "abandoned"
        other.decided_at = now
        other.reason = reason
        closed += 1
    return closed


def request_certification(
    user: User, method: str, provider_reference: str | None = None
) -> CertificationRequest:
    session = db.session()
    request = CertificationRequest(
        user_id=user.id, method=method, status="pending", provider_reference=provider_reference
    )
    session.add(request)
    session.flush()
    return request


def certify(request: CertificationRequest, actor: User | None, reason: str | None = None) -> None:
    """Mark the request and its user certified; the first certified member becomes admin.

    The user's other pending requests (a counsellor request made before an online check, or
    the reverse) are closed: nobody may certify the account a second time.
    """
    user = request.user
    now = utcnow()
    request.status = "certified"
    request.decided_at = now
    request.decided_by_id = actor.id if actor else None
    request.reason = reason
    user.certified_at = now
    events.after_commit(
        db.session(),
        "certification_granted",
        actor=actor.username if actor else "verification_en_ligne",
        account=user.username,
        method=request.method,
    )
    close_pending_requests(user, CLOSED_CERTIFIED, besides=request.id)
    membership = active_membership(user)
    if membership is not None and administrator_of(membership.establishment_id) is None:
        membership.role = "admin"
        db.session().flush()
        _notify_waiting_requests(membership)
    enqueue(
        kind="certified",
        to=user.email,
        subject="Votre compte entreprise France Travail est certifié",
        template="certified",
        user=user,
        link=settings().base_url + url_for("establishments.espace"),
    )


def reject(request: CertificationRequest, actor: User, reason: str) -> None:
    events.after_commit(
        db.session(),
        "certification_refused",
        actor=actor.username,
        account=request.user.username,
        method=request.method,
    )
    request.status = "rejected"
    request.decided_at = utcnow()
    request.decided_by_id = actor.id
    request.reason = reason
    enqueue(
        kind="certification_rejected",
        to=request.user.email,
        subject="Votre demande de certification n'a pas abouti",
        template="certification_rejected",
        user=request.user,
        reason=reason,
        link=settings().base_url + url_for("establishments.certification"),
    )


def fall_back_to_counselor(request: CertificationRequest, outcome: str) -> CertificationRequest:
    """A refused or abandoned online check joins the counsellor queue (once: a counsellor
    request already pending is kept, not doubled)."""
    request.status = "abandoned"
    request.decided_at = utcnow()
    request.reason = f"Vérification en ligne : {OUTCOME_LABELS.get(outcome, outcome)}"
    assert request.user is not None
    waiting = db.session().scalar(
        select(CertificationRequest).where(
            CertificationRequest.user_id == request.user_id,
            CertificationRequest.method == "counselor",
            CertificationRequest.status == "pending",
        )
    )
    return waiting or request_certification(request.user, "counselor")


def apply_online_result(request: CertificationRequest, outcome: str) -> None:
    """The provider's verdict on a pending online check: certified, or to a counsellor."""
    if outcome == "approved":
        certify(request, None, "Vérification d'identité en ligne")
    else:
        fall_back_to_counselor(request, outcome)


ONLINE_CHECK_TIMEOUT = timedelta(minutes=30)


def expire_stale_online_checks(user: User | None = None) -> int:
    """Online checks that never came back (the user left the provider) join the
    counsellor queue after ``ONLINE_CHECK_TIMEOUT``; return how many did."""
    statement = select(CertificationRequest).where(
        CertificationRequest.method == "online",
        CertificationRequest.status == "pending",
        CertificationRequest.created_at < utcnow() - ONLINE_CHECK_TIMEOUT,
    )
    if user is not None:
        statement = statement.where(CertificationRequest.user_id == user.id)
    stale = list(db.session().scalars(statement.limit(500)))
    for request in stale:
        fall_back_to_counselor(request, "abandonnée (pas de retour du prestataire)")
    return len(stale)


def onboarding_target(user: User) -> str | None:
    """Where an employer's first logins go until the espace is ready (seed order)."""
    if user.role != "employer":
        return None
    # One indexed read of a single column: this runs at every login.
    status = db.session().scalar(select(Membership.status).where(Membership.user_id == user.id))
    endpoint = onboarding_endpoint(
        status, certified=user.certified_at is not None, asked=lambda: latest_certification(user)
    )
    return url_for(endpoint) if endpoint else None


def onboarding_endpoint(
    status: str | None, *, certified: bool, asked: Callable[[], object | None]
) -> str | None:
    """The endpoint of the next onboarding step for an employer whose membership is in
    ``status``; ``asked()`` (a query, run only when needed) says if a certification was
    requested. Also run by the passkey login fast path."""
    if status is None or status in ("refused", "removed"):
        return "establishments.establishment"
    if status == "pending":
        return "establishments.pending"
    if not certified and asked() is None:
        return "establishments.certification"
    return None


def found_to_dict(found: directory_module.Establishment) -> dict[str, object]:
    return asdict(found)
