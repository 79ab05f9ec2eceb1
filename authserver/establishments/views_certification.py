"""Choose how the account is certified: online (identity check) or by a counsellor."""

from __future__ import annotations

import secrets

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from authserver import db
from authserver.errors import json_error
from authserver.establishments import IDENTITY_KEY, service
from authserver.establishments.blueprint import bp
from authserver.establishments.identity import (
    Applicant,
    EmbeddedVerifier,
    IdentityUnavailable,
    IdentityVerifier,
    InvalidCallback,
)
from authserver.models import CertificationRequest
from authserver.web import csrf, is_local_request, settings

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
    base = settings().base_url
    try:
        started = verifier().start(
            reference=reference,
            applicant=Applicant(
                first_name=current_user.first_name,
                last_name=current_user.last_name,
                user_id=current_user.public_id,
            ),
            callback_url=base + url_for("establishments.certification_callback"),
            return_url=base + url_for("establishments.certification_return"),
            dev_page_url=url_for("establishments.dev_identity", reference=reference),
        )
    except IdentityUnavailable as exc:
        current_app.logger.warning("identity provider unavailable: %s", exc)
        return render_template(
            "establishments/certification.html",
            methods=METHODS,
            pending=pending,
            error=IdentityUnavailable.user_message,
        ), 503
    service.request_certification(
        current_user, "online", provider_reference=started.provider_reference
    )
    db.session().commit()
    return redirect(started.redirect_url)


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
    service.apply_online_result(row, result.outcome)
    session.commit()
    return _outcome_page(result.outcome)


def _outcome_page(outcome: str) -> Response | str:
    if outcome == "approved":
        flash("Votre compte est certifié : vous avez accès à l'ensemble des services.", "success")
        return redirect(url_for("establishments.espace"))
    return render_template("establishments/certification_failed.html", reason=outcome)


@bp.get("/certification/retour")
@login_required
def certification_return() -> Response | str:
    """Back from a provider whose result comes by webhook (Onfido): where it stands.

    The webhook may already have applied the result; if not, the provider is asked (a
    server-to-server read, bounded in time). Still running: the « en cours » page.
    """
    session = db.session()
    latest = session.scalar(
        select(CertificationRequest)
        .where(
            CertificationRequest.user_id == current_user.id,
            CertificationRequest.method == "online",
        )
        .order_by(CertificationRequest.id.desc())
        .limit(1)
    )
    if current_user.certified_at is not None:
        return _outcome_page("approved")
    if latest is None:
        return redirect(url_for("establishments.certification"))
    if latest.status == "pending" and latest.provider_reference:
        try:
            result = verifier().fetch_result(latest.provider_reference)
        except IdentityUnavailable as exc:
            current_app.logger.warning("identity provider unavailable: %s", exc)
            result = None
        if result is not None:
            service.apply_online_result(latest, result.outcome)
            session.commit()
            return _outcome_page(result.outcome)
        return render_template("establishments/certification_waiting.html")
    return render_template("establishments/certification_failed.html", reason="abandoned")


@bp.post("/certification/webhook")
@csrf.exempt
def certification_webhook() -> Response | tuple[Response, int]:
    """The provider's server-to-server notification (Onfido's signed webhook).

    No user session: the signature proves the sender, the workflow run id in it binds the
    result to our request. Answers JSON; any 2xx tells the provider to stop retrying.
    """
    try:
        result = verifier().read_webhook(request.headers, request.get_data(cache=False))
    except InvalidCallback as exc:
        current_app.logger.warning("identity webhook refused: %s", exc)
        return json_error(
            401, "invalid_signature", "La notification n'est pas signée par le prestataire."
        ), 401
    if result is None:
        return jsonify({"status": "ignored"})
    session = db.session()
    row = session.scalar(
        select(CertificationRequest).where(
            CertificationRequest.provider_reference == result.reference,
            CertificationRequest.method == "online",
        )
    )
    late_approval = (
        row is not None
        and row.status == "abandoned"
        and result.outcome == "approved"
        and row.user is not None
        and row.user.certified_at is None
    )
    if row is None or (row.status != "pending" and not late_approval):
        # Unknown run, or already decided (webhooks may come twice): nothing to do.
        return jsonify({"status": "ignored"})
    # A check given up as abandoned (no news for ONLINE_CHECK_TIMEOUT) that the provider
    # approves after all still certifies the account (the counsellor request is closed).
    service.apply_online_result(row, result.outcome)
    session.commit()
    return jsonify({"status": "applied", "outcome": result.outcome})


@bp.route("/dev/identity/<reference>", methods=["GET", "POST"])
@login_required
def dev_identity(reference: str) -> object:
    """The embedded development provider: the tester approves, refuses or abandons.

    Only on this machine (the setting itself is refused for a server others reach, and the
    page also refuses a remote browser of a server listening on every address)."""
    provider = verifier()
    if not isinstance(provider, EmbeddedVerifier) or not is_local_request():
        abort(404)
    if request.method == "GET":
        return render_template("establishments/dev_identity.html", reference=reference)
    outcome = request.form.get("outcome", "")
    if outcome not in ("approved", "refused", "abandoned"):
        abort(400)
    token = provider.sign_result(reference, outcome)
    return redirect(url_for("establishments.certification_callback", result=token))
