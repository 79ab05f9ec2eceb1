"""Forgotten password: request a link, then choose a new password."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from authserver import db
from authserver.accounts import breached, service, tokens
from authserver.accounts.blueprint import bp
from authserver.accounts.forms import AccountLookupForm, ResetPasswordForm
from authserver.throttle import throttle
from authserver.web import client_ip


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password() -> object:
    form = AccountLookupForm()
    if not form.is_submitted():
        return render_template("accounts/forgot.html", form=form)
    if not form.validate():
        return render_template("accounts/forgot.html", form=form), 400
    verdict = throttle().hit_ip("forgot", 10, 3600, client_ip())
    if not verdict.allowed:
        minutes = max(1, (verdict.retry_after + 59) // 60)
        flash(f"Trop de demandes. Réessayez dans {minutes} minute(s).", "error")
        return (
            render_template("accounts/forgot.html", form=form),
            429,
            {"Retry-After": str(verdict.retry_after)},
        )
    service.request_password_reset(form.username.data, form.email.data)
    db.session().commit()
    return render_template("accounts/forgot_done.html")


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> object:
    try:
        user = service.reset_user_of(token)
    except tokens.TokenExpired:
        return render_template("accounts/reset_problem.html", problem="expired"), 410
    except tokens.TokenUsed:
        return render_template("accounts/reset_problem.html", problem="used"), 410
    except tokens.TokenInvalid:
        return render_template("accounts/reset_problem.html", problem="invalid"), 404

    form = ResetPasswordForm()
    if not form.is_submitted():
        return render_template("accounts/reset.html", form=form)
    if not form.validate_for(username=user.username, email=user.email) or not breached.check_field(
        form.password, form.password.data
    ):
        return render_template("accounts/reset.html", form=form), 400
    try:
        service.reset_password(token, form.password.data)
        db.session().commit()
    except (tokens.TokenExpired, tokens.TokenUsed, tokens.TokenInvalid):
        db.session().rollback()
        return render_template("accounts/reset_problem.html", problem="used"), 410
    flash(
        "Votre mot de passe a été modifié. Toutes vos sessions ont été fermées : "
        "connectez-vous avec votre nouveau mot de passe.",
        "success",
    )
    return redirect(url_for("accounts.login"))
