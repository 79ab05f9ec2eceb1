"""Password login and logout."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from authserver import db
from authserver.accounts import service
from authserver.accounts.blueprint import bp
from authserver.accounts.forms import LoginForm
from authserver.accounts.validation import attempt_label, has_control_characters, username_key
from authserver.alerts import devices, events, notify
from authserver.metrics import THROTTLED
from authserver.sessions.completion import complete_login, safe_next
from authserver.sessions.login import end_session
from authserver.throttle import throttle
from authserver.web import client_ip
from authserver.webauthn.pages import should_offer

BAD_CREDENTIALS = "Identifiant ou mot de passe incorrect."


@bp.get("/")
def home() -> Response:
    if current_user.is_authenticated:
        return redirect(url_for("establishments.espace"))
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
    key = username_key(username)
    user = service.find_by_username(username)
    device = devices.known_device(user.id) if user else None
    device_key = device.cookie_hash.hex() if device else None

    # Counted before the (slow) password check: parallel guesses cannot all pass.
    reservation = throttle().reserve_login(key, client_ip(), device_key)
    if not reservation.allowed:
        THROTTLED.labels("login").inc()
        events.record_login(
            method="password",
            outcome="throttled",
            reason="throttled",
            user=user,
            username_attempt=attempt_label(username),
        )
        db.session().commit()
        minutes = max(1, (reservation.retry_after + 59) // 60)
        page, status = _render(
            form,
            429,
            error=(
                "Trop de tentatives de connexion. Pour votre sécurité, réessayez dans "
                f"{minutes} minute(s), ou réinitialisez votre mot de passe."
            ),
        )
        return page, status, {"Retry-After": str(reservation.retry_after)}

    result = service.check_password(user, form.password.data)
    outcome = result.outcome
    if outcome is service.LoginOutcome.BAD_CREDENTIALS:
        if reservation.reached and user is not None:
            notify.account_throttled(user)
        events.record_login(
            method="password",
            outcome="failure",
            reason="bad_credentials",
            user=user,
            username_attempt=attempt_label(username),
        )
        db.session().commit()
        return _render(form, 401, error=BAD_CREDENTIALS)

    assert user is not None
    throttle().refund(reservation)  # the password was right: not a failed attempt
    if outcome is not service.LoginOutcome.OK:
        events.record_login(method="password", outcome="failure", reason=outcome.value, user=user)
        db.session().commit()
        return _render(form, 403, problem=outcome.value, problem_username=user.username)

    throttle().login_succeeded(key, device_key)
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
