"""The establishment: attach it by SIRET at the first login, confirm it, see it, leave it."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from authserver import db
from authserver.establishments import DIRECTORY_KEY, service
from authserver.establishments.blueprint import bp
from authserver.establishments.directory import DirectoryUnavailable
from authserver.establishments.directory import Establishment as Found
from authserver.establishments.siret import (
    SIRET_INPUT_MAX,
    InvalidSiret,
    format_siret,
    validate,
)

PENDING_KEY = "establishment_found"
TYPED_KEY = "establishment_typed"  # the SIRET as typed, for `Retour`
UNKNOWN = (
    "Vous n'avez pas encore de numéro Siret ou votre numéro Siret n'est pas reconnu ? "
    "Appelez un conseiller entreprise au 39 95 (service gratuit + prix appel) pour accéder "
    "aux services de France Travail."
)


def _siret_page(status: int = 200, **context: object) -> tuple[str, int]:
    context.setdefault("membership", service.membership_of(current_user))
    context.setdefault("error", None)
    context.setdefault("siret_input_max", SIRET_INPUT_MAX)
    return render_template("establishments/siret.html", **context), status


@bp.route("/establishment", methods=["GET", "POST"])
@login_required
def establishment() -> object:
    membership = service.membership_of(current_user)
    if request.method == "GET":
        # Back from the confirmation screen (`Retour`, a GET form carrying the SIRET as it was
        # typed): the SIRET is still there to correct.
        typed = request.args.get("siret")
        if typed is None:
            found = session.get(PENDING_KEY)
            has_siret = isinstance(found, dict) and "siret" in found
            typed = format_siret(found["siret"]) if has_siret else ""
        return _siret_page(siret=typed[:SIRET_INPUT_MAX], membership=membership)
    typed = request.form.get("siret") or ""
    raw = typed[:SIRET_INPUT_MAX]  # what the page shows back (the field's maxlength)
    try:
        siret = validate(typed)
    except InvalidSiret as exc:
        return _siret_page(400, siret=raw, error=str(exc), membership=membership)
    if (
        membership is not None
        and membership.status == "active"
        and membership.establishment.siret != siret
    ):
        error = str(service.AlreadyAttached(membership))
        return _siret_page(409, siret=raw, error=error, membership=membership)
    try:
        found = current_app.extensions[DIRECTORY_KEY].lookup(siret)
    except DirectoryUnavailable:
        current_app.logger.warning("company directory unavailable")
        error = (
            "Le service de recherche des entreprises est momentanément indisponible. "
            "Veuillez réessayer dans quelques minutes."
        )
        return _siret_page(503, siret=raw, error=error, membership=membership)
    if found is None or not found.active:
        return _siret_page(404, siret=raw, error=UNKNOWN, unknown=True, membership=membership)
    session[PENDING_KEY] = service.found_to_dict(found)
    session[TYPED_KEY] = raw
    return redirect(url_for("establishments.confirm"))


@bp.route("/establishment/confirm", methods=["GET", "POST"])
@login_required
def confirm() -> object:
    data = session.get(PENDING_KEY)
    if not isinstance(data, dict):
        return redirect(url_for("establishments.establishment"))
    found = Found(**data)
    if request.method == "GET":
        typed = session.get(TYPED_KEY)
        if not isinstance(typed, str):
            typed = format_siret(found.siret)
        return render_template("establishments/confirm.html", found=found, typed=typed)
    try:
        membership = service.attach(current_user, found)
    except service.AlreadyAttached as exc:
        db.session().rollback()
        session.pop(PENDING_KEY, None)
        return _siret_page(409, siret=format_siret(found.siret), error=str(exc))
    db.session().commit()
    session.pop(PENDING_KEY, None)
    session.pop(TYPED_KEY, None)
    if membership.status == "pending":
        return redirect(url_for("establishments.pending"))
    return redirect(service.onboarding_target(current_user) or url_for("establishments.espace"))


@bp.get("/establishment/pending")
@login_required
def pending() -> Response | str:
    membership = service.membership_of(current_user)
    if membership is None or membership.status != "pending":
        return redirect(url_for("establishments.espace"))
    return render_template("establishments/pending.html", membership=membership)


@bp.route("/establishment/leave", methods=["GET", "POST"])
@login_required
def leave() -> Response | str:
    """« Quitter l'établissement »: the explicit way to change establishment."""
    membership = service.membership_of(current_user)
    if membership is None or membership.status not in ("active", "pending"):
        return redirect(url_for("establishments.establishment"))
    if request.method == "GET":
        successor_needed = membership.role == "admin"
        return render_template(
            "establishments/leave.html", membership=membership, successor_needed=successor_needed
        )
    name = membership.establishment.name
    service.leave(current_user)
    db.session().commit()
    flash(
        f"Vous avez quitté l'espace de l'établissement {name}. "
        "Vous pouvez rattacher un autre établissement.",
        "success",
    )
    return redirect(url_for("establishments.establishment"))


@bp.get("/establishment/details")
@login_required
def details() -> Response | str:
    """« Mon entreprise »: the establishment's details (from the company directory), the
    user's place in it and, for its administrator, the way to « Mes collaborateurs ». The
    counsellor-certification page's « Compléter les infos de mon entreprise » leads here."""
    membership = service.membership_of(current_user)
    if membership is None or membership.status not in ("active", "pending"):
        return redirect(url_for("establishments.establishment"))
    if membership.status == "pending":
        return redirect(url_for("establishments.pending"))
    return render_template(
        "establishments/details.html",
        membership=membership,
        establishment=membership.establishment,
        certified=current_user.certified_at is not None,
    )
