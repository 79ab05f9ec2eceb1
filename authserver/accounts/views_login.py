"""Password login and logout."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from authserver import db
from authserver.accounts import password_attempt, service
from authserver.accounts.blueprint import bp
from authserver.accounts.forms import LoginForm
from authserver.accounts.validation import attempt_label, has_control_characters
from authserver.alerts import events
from authserver.plural import plural
from authserver.sessions.completion import complete_login, landing_url, safe_next
from authserver.sessions.login import end_session
from authserver.webauthn.pages import should_offer

BAD_CREDENTIALS = "Identifiant ou mot de passe incorrect."


@bp.get("/")
def home() -> Response:
    if current_user.is_authenticated:
        return redirect(landing_url(current_user))
    return redirect(url_for("accounts.login"))


def _render(form: LoginForm, status: int = 200, **context: object) -> tuple[str, int]:
    next_url = safe_next(request.values.get("next"))
    return render_template("accounts/login.html", form=form, next_url=next_url, **context), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> object:
    form = LoginForm()
    if not form.is_submitted():
        return _render(form)
    if not form.validate():
        # Every attempt is a login event, a malformed one too (empty or oversized fields).
        typed = form.username.data or ""
        events.record_login(
            method="password",
            outcome="failure",
            reason="invalid_input",
            user=service.find_by_username(typed) if typed else None,
            username_attempt=attempt_label(typed),
        )
        db.session().commit()
        return _render(form, 400)

    username = form.username.data
    user = service.find_by_username(username)
    tried = password_attempt.attempt(
        username,
        form.password.data,
        user=user,
        prechecked=request.environ.get(password_attempt.PRECHECKED),
    )
    if tried.throttled:
        db.session().commit()
        minutes = max(1, (tried.retry_after + 59) // 60)
        error = (
            "Trop de tentatives de connexion. Pour votre sécurité, réessayez dans "
            f"{plural(minutes, 'minute')}, ou réinitialisez votre mot de passe "
            "(« Mot de passe oublié ? »)."
        )
        page, status = _render(form, 429, error=error, throttled=True)
        return page, status, {"Retry-After": str(tried.retry_after)}
    if tried.outcome is service.LoginOutcome.BAD_CREDENTIALS:
        db.session().commit()
        return _render(form, 401, error=BAD_CREDENTIALS)
    assert user is not None and tried.outcome is not None
    if tried.outcome is not service.LoginOutcome.OK:
        db.session().commit()
        return _render(form, 403, problem=tried.outcome.value, problem_username=user.username)

    # A CR/LF in ``next`` would reach the Location header (a 500): dropped here; safe_next
    # (sessions) should refuse control characters for every caller.
    next_url = request.form.get("next") or ""
    if has_control_characters(next_url):
        next_url = ""
    target = complete_login(user, method="password", next_url=next_url or None)
    if should_offer(user):
        target = url_for("passkeys.offer", next=target)
    db.session().commit()
    return redirect(target)


@bp.post("/logout")
def logout() -> Response:
    end_session()
    db.session().commit()
    flash("Vous êtes déconnecté.", "success")
    return redirect(url_for("accounts.login"))
