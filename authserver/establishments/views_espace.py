"""Mon espace personnel: the establishment, the three tabs, certification-gated services."""

from __future__ import annotations

from dataclasses import dataclass

from flask import redirect, render_template, url_for
from flask_login import current_user, login_required

from authserver import db
from authserver.establishments import service
from authserver.establishments.blueprint import bp
from authserver.web import settings


@dataclass(frozen=True)
class PortalService:
    title: str
    tab: str  # accueil, recrutement, administratif
    needs_certification: bool
    url: str = "#"


SERVICES = (
    PortalService("Publier une offre en ligne", "recrutement", False),
    PortalService("Rechercher des candidats en ligne", "recrutement", True),
    PortalService("Demander une aide à la formation POEI", "recrutement", True),
    PortalService("Donner de la visibilité à mon entreprise", "recrutement", False),
    PortalService("Remettre une attestation employeur", "administratif", True),
    PortalService(
        "Proposer le Contrat de Sécurisation Professionnelle (CSP) : télécharger le kit CSP",
        "administratif",
        True,
    ),
    PortalService("Recourir à l'activité partielle", "administratif", True),
    PortalService("Télécharger une attestation de compte à jour", "administratif", True),
)


@bp.get("/espace")
@login_required
def espace() -> object:
    target = service.onboarding_target(current_user)
    if target is not None and target != url_for("establishments.certification"):
        return redirect(target)
    if current_user.certified_at is None and service.expire_stale_online_checks(current_user):
        db.session().commit()
    membership = service.active_membership(current_user)
    certified = current_user.certified_at is not None
    certification = service.latest_certification(current_user)
    return render_template(
        "establishments/espace.html",
        user=current_user,
        membership=membership,
        establishment=membership.establishment if membership else None,
        certified=certified,
        certification=certification,
        services=SERVICES,
        agency_phone=settings().agency_phone,
        agency_email=settings().agency_email,
    )
