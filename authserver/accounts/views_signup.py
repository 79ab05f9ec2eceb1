"""Sign-up, activation and new activation links."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from authserver import db
from authserver.accounts import breached, recovery, service, tokens
from authserver.accounts.blueprint import bp
from authserver.accounts.forms import AccountLookupForm, ResendForm, SignupForm
from authserver.accounts.validation import USERNAME_RULE
from authserver.plural import plural
from authserver.throttle import throttle
from authserver.web import client_ip, settings
from authserver.webauthn import credentials


def _too_many(
    retry_after: int, template: str, **context: object
) -> tuple[str, int, dict[str, str]]:
    minutes = max(1, (retry_after + 59) // 60)
    flash(
        f"Trop de demandes depuis votre connexion. Réessayez dans {plural(minutes, 'minute')}.",
        "error",
    )
    return render_template(template, **context), 429, {"Retry-After": str(retry_after)}


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> object:
    form = SignupForm()
    context = {"form": form, "username_rule": USERNAME_RULE}
    if not form.is_submitted():
        return render_template("accounts/signup.html", **context)
    if not form.validate() or (
        not form.passwordless.data and not breached.check_field(form.password, form.password.data)
    ):
        return render_template("accounts/signup.html", **context), 400
    verdict = throttle().hit_ip("signup", 20, 3600, client_ip())
    if not verdict.allowed:
        return _too_many(verdict.retry_after, "accounts/signup.html", **context)
    data = service.SignupData(
        username=form.username.data,
        password=None if form.passwordless.data else form.password.data,
        civility=form.civility.data,
        last_name=form.last_name.data,
        first_name=form.first_name.data,
        email=form.email.data,
        phone=form.phone.data,
    )
    try:
        service.register(data)
        db.session().commit()
    except service.UsernameTaken:
        db.session().rollback()
        form.username.errors = ["Cet identifiant n'est pas disponible. Choisissez-en un autre."]
        return render_template("accounts/signup.html", **context), 409
    return redirect(url_for("accounts.signup_done"))


@bp.get("/signup/confirmation")
def signup_done() -> str:
    return render_template("accounts/signup_done.html")


@bp.get("/activate/<token>")
def activate(token: str) -> object:
    try:
        user = service.activate(token)
        enrol_token = None
        if user.password_hash is None and not credentials.count_for(db.session(), user.id):
            # A passwordless sign-up: its first passkey, made here, is its way in.
            enrol_token = recovery.issue_enrolment(user)
        db.session().commit()
    except tokens.TokenExpired:
        db.session().rollback()
        return _link_problem("expired", 410)
    except tokens.TokenUsed:
        db.session().rollback()
        return _link_problem("used", 410)
    except tokens.TokenInvalid:
        db.session().rollback()
        return _link_problem("invalid", 404)
    return render_template("accounts/activated.html", enrol_token=enrol_token, user=user)


def _link_problem(problem: str, status: int) -> tuple[str, int]:
    form = AccountLookupForm()
    return render_template("accounts/activation_problem.html", problem=problem, form=form), status


@bp.route("/activate/resend", methods=["GET", "POST"])
def resend_activation() -> object:
    form = AccountLookupForm()
    if not form.is_submitted():
        return render_template("accounts/resend.html", form=form)
    if not form.validate():
        return render_template("accounts/resend.html", form=form), 400
    verdict = throttle().hit_ip("resend", 10, 3600, client_ip())
    if not verdict.allowed:
        return _too_many(verdict.retry_after, "accounts/resend.html", form=form)
    service.resend_activation(form.username.data, form.email.data)
    db.session().commit()
    return render_template("accounts/resend_done.html")


@bp.post("/activate/resend-from-login")
def resend_from_login() -> Response:
    """The button shown to a not-yet-activated account after a correct password."""
    form = ResendForm()
    if form.validate():
        verdict = throttle().hit_ip("resend", 10, 3600, client_ip())
        if verdict.allowed:
            service.resend_activation(form.username.data or "", "")
            db.session().commit()
    flash(
        "Si votre compte n'est pas encore activé, un nouvel e-mail d'activation vient de vous "
        "être envoyé.",
        "info",
    )
    return redirect(url_for("accounts.login"))


@bp.get("/cgu")
def cgu() -> str:
    return render_template("accounts/cgu.html", cgu_version=settings().cgu_version)
