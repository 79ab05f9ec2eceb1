"""Mon espace personnel: the establishment, the three tabs, certification-gated services."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, redirect, render_template, url_for
from flask_login import current_user, login_required

from authserver import db
from authserver.establishments import AGENCIES_KEY, service
from authserver.establishments.agencies import AgencyTable
from authserver.establishments.blueprint import bp


@dataclass(frozen=True)
class PortalService:
    title: str
    tab: str  # accueil, recrutement, administratif
    needs_certification: bool
    url: str = "#"
    # The first sentence of the seed's message when the espace is not certified.
    gated_intro: str = "Pour accéder à ce service, vous devez disposer d'un espace certifié*."


CSP_GATED_INTRO = (
    "Pour récupérer les documents liés au contrat de sécurisation professionnelle : Document "
    "d'information, notice d'information salarié, bulletin d'acceptation et demande "
    "d'allocation, vous devez disposer d'un espace certifié*."
)


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
        gated_intro=CSP_GATED_INTRO,
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
    establishment = membership.establishment if membership else None
    agencies: AgencyTable = current_app.extensions[AGENCIES_KEY]
    agency = agencies.for_postal_code(establishment.postal_code if establishment else None)
    return render_template(
        "establishments/espace.html",
        user=current_user,
        membership=membership,
        establishment=establishment,
        certified=certified,
        certification=certification,
        services=SERVICES,
        agency=agency,
    )
