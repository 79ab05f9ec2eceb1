"""Choose how the account is certified: online (identity check) or by a counsellor."""

from __future__ import annotations

import secrets

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from authserver import db
from authserver.establishments import IDENTITY_KEY, service
from authserver.establishments.blueprint import bp
from authserver.establishments.identity import EmbeddedVerifier, IdentityVerifier, InvalidCallback
from authserver.models import CertificationRequest
from authserver.web import settings

METHODS = {"online": "Certification en ligne", "counselor": "Certification par un conseiller"}


def verifier() -> IdentityVerifier:
    return current_app.extensions[IDENTITY_KEY]


@bp.route("/certification", methods=["GET", "POST"])
@login_required
def certification() -> object:
    if current_user.certified_at is not None:
        return redirect(url_for("establishments.espace"))
    membership = service.membership_of(current_user)
    if membership is not None and membership.status == "pending":
        return redirect(url_for("establishments.pending"))
    if membership is None or membership.status != "active":
        return redirect(url_for("establishments.establishment"))
    pending = service.latest_certification(current_user)
    if request.method == "GET":
        return render_template(
            "establishments/certification.html", methods=METHODS, pending=pending, error=None
        )
    method = request.form.get("method")
    if method not in METHODS:
        return render_template(
            "establishments/certification.html",
            methods=METHODS,
            pending=pending,
            error="Veuillez choisir une démarche de certification.",
        ), 400
    if method == "counselor":
        if pending is None or pending.status != "pending" or pending.method != "counselor":
            service.request_certification(current_user, "counselor")
        db.session().commit()
        return redirect(url_for("establishments.counselor_requested"))
    reference = secrets.token_urlsafe(24)
    service.request_certification(current_user, "online", provider_reference=reference)
    db.session().commit()
    callback = settings().base_url + url_for("establishments.certification_callback")
    dev_page = url_for("establishments.dev_identity", reference=reference)
    return redirect(verifier().start_url(reference, callback, dev_page))


@bp.get("/certification/conseiller")
@login_required
def counselor_requested() -> str:
    return render_template("establishments/counselor_requested.html")


@bp.get("/certification/callback")
@login_required
def certification_callback() -> object:
    try:
        result = verifier().read_callback(request.args)
    except InvalidCallback:
        return render_template("establishments/certification_failed.html", reason="invalid"), 400
    session = db.session()
    row = session.scalar(
        select(CertificationRequest).where(
            CertificationRequest.provider_reference == result.reference,
            CertificationRequest.user_id == current_user.id,
        )
    )
    if row is None or row.status != "pending":
        return render_template("establishments/certification_failed.html", reason="invalid"), 400
    if result.outcome == "approved":
        service.certify(row, None, "Vérification d'identité en ligne")
        session.commit()
        flash("Votre compte est certifié : vous avez accès à l'ensemble des services.", "success")
        return redirect(url_for("establishments.espace"))
    service.fall_back_to_counselor(row, result.outcome)
    session.commit()
    return render_template("establishments/certification_failed.html", reason=result.outcome)


@bp.route("/dev/identity/<reference>", methods=["GET", "POST"])
@login_required
def dev_identity(reference: str) -> object:
    """The embedded development provider: the tester approves, refuses or abandons."""
    provider = verifier()
    if not isinstance(provider, EmbeddedVerifier):
        abort(404)
    if request.method == "GET":
        return render_template("establishments/dev_identity.html", reference=reference)
    outcome = request.form.get("outcome", "")
    if outcome not in ("approved", "refused", "abandoned"):
        abort(400)
    token = provider.sign_result(reference, outcome)
    return redirect(url_for("establishments.certification_callback", result=token))
