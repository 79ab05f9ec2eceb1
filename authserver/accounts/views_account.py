"""Mon compte: personal data, e-mail change, data export, account deletion."""

from __future__ import annotations

import json

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from authserver import db
from authserver.accounts import profile, tokens, validation
from authserver.accounts.blueprint import bp
from authserver.accounts.forms import CIVILITIES
from authserver.sessions.login import end_session, recently_authenticated


def _reauth(next_endpoint: str) -> Response:
    flash("Cette opération est sensible : confirmez d'abord votre identité.", "info")
    return redirect(url_for("passkeys.reauth", next=url_for(next_endpoint)))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> object:
    errors: dict[str, str] = {}
    values = {
        "civility": current_user.civility,
        "last_name": current_user.last_name,
        "first_name": current_user.first_name,
        "phone": current_user.phone,
    }
    if request.method == "POST":
        values = {key: (request.form.get(key) or "").strip() for key in values}
        cleaned: dict[str, str] = {}
        if values["civility"] not in dict(CIVILITIES):
            errors["civility"] = "Veuillez choisir votre civilité."
        else:
            cleaned["civility"] = values["civility"]
        for key, cleaner in (
            ("last_name", lambda v: validation.clean_name(v, "nom")),
            ("first_name", lambda v: validation.clean_name(v, "prénom")),
            ("phone", validation.clean_phone),
        ):
            try:
                cleaned[key] = cleaner(values[key])
            except validation.InvalidField as exc:
                errors[key] = str(exc)
        if not errors:
            profile.update_profile(current_user, **cleaned)
            db.session().commit()
            flash("Vos informations ont été enregistrées.", "success")
            return redirect(url_for("accounts.account"))
    status = 400 if errors else 200
    return render_template(
        "accounts/account.html", values=values, errors=errors, civilities=CIVILITIES
    ), status


@bp.route("/account/email", methods=["GET", "POST"])
@login_required
def change_email() -> object:
    if not recently_authenticated():
        return _reauth("accounts.change_email")
    error = None
    value = ""
    if request.method == "POST":
        value = (request.form.get("email") or "").strip()
        try:
            new_email = validation.clean_email(value)
            profile.request_email_change(current_user, new_email)
        except validation.InvalidField as exc:
            error = str(exc)
        else:
            db.session().commit()
            flash(
                f"Un e-mail de confirmation a été envoyé à {new_email}. Votre adresse sera "
                "modifiée quand vous aurez ouvert le lien qu'il contient.",
                "success",
            )
            return redirect(url_for("accounts.account"))
    return render_template("accounts/change_email.html", error=error, value=value), (
        400 if error else 200
    )


@bp.get("/account/email/confirm/<token>")
def confirm_email(token: str) -> object:
    try:
        profile.confirm_email_change(token)
        db.session().commit()
    except (tokens.TokenInvalid, tokens.TokenExpired, tokens.TokenUsed):
        db.session().rollback()
        return render_template("accounts/email_link_problem.html"), 410
    flash("Votre nouvelle adresse e-mail est confirmée.", "success")
    return redirect(url_for("accounts.account"))


@bp.get("/account/export.json")
@login_required
def export_data() -> Response:
    body = json.dumps(profile.export(current_user), ensure_ascii=False, indent=2)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="mes-donnees-france-travail.json"'},
    )


@bp.route("/account/delete", methods=["GET", "POST"])
@login_required
def delete_account() -> object:
    if not recently_authenticated():
        return _reauth("accounts.delete_account")
    refused = profile.deletion_refused(current_user)
    if refused is not None:
        status = 200 if request.method == "GET" else 409
        return render_template("accounts/delete.html", refused=refused), status
    if request.method == "GET":
        return render_template("accounts/delete.html")
    if request.form.get("confirm") != "oui":
        error = "Cochez la case pour confirmer la suppression de votre compte."
        return render_template("accounts/delete.html", error=error), 400
    profile.delete_account(current_user)
    end_session()
    db.session().commit()
    flash("Votre compte a été supprimé.", "success")
    return redirect(url_for("accounts.login"))
