"""Forgotten password: request a link, then choose a new password."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from authserver import db
from authserver.accounts import breached, service, tokens
from authserver.accounts.blueprint import bp
from authserver.accounts.forms import AccountLookupForm, ResendForm, ResetPasswordForm
from authserver.plural import plural
from authserver.throttle import throttle
from authserver.web import client_ip


def _too_many(
    retry_after: int, form: AccountLookupForm | None = None
) -> tuple[str, int, dict[str, str]]:
    minutes = max(1, (retry_after + 59) // 60)
    flash(f"Trop de demandes. Réessayez dans {plural(minutes, 'minute')}.", "error")
    page = render_template("accounts/forgot.html", form=form or AccountLookupForm())
    return page, 429, {"Retry-After": str(retry_after)}


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password() -> object:
    form = AccountLookupForm()
    if not form.is_submitted():
        return render_template("accounts/forgot.html", form=form)
    if not form.validate():
        return render_template("accounts/forgot.html", form=form), 400
    verdict = throttle().hit_ip("forgot", 10, 3600, client_ip())
    if not verdict.allowed:
        return _too_many(verdict.retry_after, form)
    service.request_password_reset(form.username.data, form.email.data)
    db.session().commit()
    return render_template("accounts/forgot_done.html")


@bp.post("/password/forgot/again")
def forgot_again() -> object:
    """« Recevoir un nouveau lien » where a reset link was already e-mailed and the page knows
    the identifiant: « Ce n'était pas moi » done, or the login page of an account that must
    choose a new password. The address is not asked again; the request is queued as
    « Mot de passe oublié ? » queues it (same limits, same answer for any identifiant)."""
    form = ResendForm()
    if form.validate():
        verdict = throttle().hit_ip("forgot", 10, 3600, client_ip())
        if not verdict.allowed:
            return _too_many(verdict.retry_after)
        service.request_password_reset(form.username.data or "", "")
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
