"""Attaching an establishment, memberships, certification. Callers commit.

Rules (from the seed): the first *certified* user of an establishment becomes
its administrator; a later user attaching the same SIRET waits until the
administrator grants or refuses; an administrator can remove a collaborator,
whose sessions lose the establishment's claims at once (claims are read live).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from flask import url_for
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from authserver import db
from authserver.establishments import directory as directory_module
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


def attach(user: User, found: directory_module.Establishment) -> Membership:
    """Link the user to the establishment: active, or pending its administrator's decision."""
    session = db.session()
    establishment = _establishment_row(found)
    admin = administrator_of(establishment.id)
    status = "pending" if admin is not None and admin.user_id != user.id else "active"
    membership = membership_of(user)
    if membership is None:
        membership = Membership(user_id=user.id)
        session.add(membership)
    membership.establishment_id = establishment.id
    membership.establishment = establishment
    membership.role = "member"
    membership.status = status
    membership.created_at = utcnow()
    membership.decided_at = None
    membership.decided_by_id = None
    # users.siret is the claim portal services read: set only while the membership is active.
    user.siret = establishment.siret if status == "active" else None
    if admin is not None and status == "pending":
        enqueue(
            kind="membership_request",
            to=admin.user.email,
            subject="Un collaborateur demande l'accès à l'espace de votre établissement",
            template="membership_request",
            admin=admin.user,
            requester=user,
            establishment=establishment,
            link=settings().base_url + url_for("establishments.collaborators"),
        )
    return membership


def decide_membership(admin: User, membership: Membership, *, grant: bool) -> None:
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


def remove_member(admin: User, membership: Membership) -> None:
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
    """Mark the request and its user certified; the first certified member becomes admin."""
    user = request.user
    request.status = "certified"
    request.decided_at = utcnow()
    request.decided_by_id = actor.id if actor else None
    request.reason = reason
    user.certified_at = utcnow()
    membership = active_membership(user)
    if membership is not None and administrator_of(membership.establishment_id) is None:
        membership.role = "admin"
    enqueue(
        kind="certified",
        to=user.email,
        subject="Votre compte entreprise France Travail est certifié",
        template="certified",
        user=user,
        link=settings().base_url + url_for("establishments.espace"),
    )


def reject(request: CertificationRequest, actor: User, reason: str) -> None:
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
    """A refused or abandoned online check joins the counsellor queue."""
    request.status = "abandoned"
    request.decided_at = utcnow()
    request.reason = f"Vérification en ligne : {outcome}"
    return request_certification(request.user, "counselor")


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


_MEMBERSHIP_STATUS = select(Membership.status).where(Membership.user_id == bindparam("user_id"))


def onboarding_target(user: User) -> str | None:
    """Where an employer's first logins go until the espace is ready (seed order)."""
    if user.role != "employer":
        return None
    # One indexed read of a single column: this runs at every login.
    status = db.session().scalar(select(Membership.status).where(Membership.user_id == user.id))
    if status is None or status in ("refused", "removed"):
        return url_for("establishments.establishment")
    if status == "pending":
        return url_for("establishments.pending")
    if user.certified_at is None and latest_certification(user) is None:
        return url_for("establishments.certification")
    return None


def found_to_dict(found: directory_module.Establishment) -> dict[str, object]:
    return asdict(found)
