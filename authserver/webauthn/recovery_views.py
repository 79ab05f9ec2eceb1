"""« J'ai perdu ma clé d'accès »: ask for a link, follow it, enrol a new passkey, be logged in.

Pages: ``/recovery`` (the request: the same answer whatever was typed, as « Mot de passe
oublié »), ``/recovery/<token>`` (the e-mailed link: a button that creates the passkey).
JSON: ``/webauthn/recovery/options`` and ``/webauthn/recovery/verify``, each with the link's
token; both need the page's CSRF token (the anonymous login ceremony does not, this one
stores a credential). The link is spent, the passkey stored and the session opened in one
transaction; the login always alerts the owner and the security team (alerts/policy.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, flash, jsonify, render_template, url_for

from authserver import db
from authserver.accounts import recovery, tokens
from authserver.accounts.forms import AccountLookupForm
from authserver.errors import APIError, json_error
from authserver.jsonapi import optional_str, read_json
from authserver.metrics import PASSKEY_CEREMONIES
from authserver.plural import plural
from authserver.sessions.completion import complete_login
from authserver.throttle import throttle
from authserver.web import client_ip
from authserver.webauthn import service
from authserver.webauthn.browser import browser_binding, new_binding, set_binding_cookie
from authserver.webauthn.errors import CeremonyError
from authserver.webauthn.notifications import passkey_added

bp = Blueprint("recovery", __name__)
bp.after_request(set_binding_cookie)

PROBLEMS = {
    tokens.TokenExpired: "expired",
    tokens.TokenUsed: "used",
    tokens.TokenInvalid: "invalid",
}
PROBLEM_STATUS = {"expired": 410, "used": 410, "invalid": 404}


@bp.route("/recovery", methods=["GET", "POST"])
def request_link() -> Any:
    form = AccountLookupForm()
    if not form.is_submitted():
        return render_template("webauthn/recovery_request.html", form=form)
    if not form.validate():
        return render_template("webauthn/recovery_request.html", form=form), 400
    verdict = throttle().hit_ip("recovery", 10, 3600, client_ip())
    if not verdict.allowed:
        minutes = max(1, (verdict.retry_after + 59) // 60)
        flash(f"Trop de demandes. Réessayez dans {plural(minutes, 'minute')}.", "error")
        page = render_template("webauthn/recovery_request.html", form=form)
        return page, 429, {"Retry-After": str(verdict.retry_after)}
    from authserver.accounts import mail_jobs

    mail_jobs.queue(mail_jobs.PASSKEY_RECOVERY, form.username.data or "", form.email.data or "")
    db.session().commit()
    return render_template("webauthn/recovery_sent.html")


def _problem_page(exc: Exception) -> tuple[str, int]:
    problem = PROBLEMS.get(type(exc), "invalid")
    return render_template("webauthn/recovery_problem.html", problem=problem), PROBLEM_STATUS[
        problem
    ]


@bp.get("/recovery/<token>")
def page(token: str) -> Any:
    try:
        user, _ = recovery.user_of(token)
    except (tokens.TokenExpired, tokens.TokenUsed, tokens.TokenInvalid) as exc:
        return _problem_page(exc)
    return render_template("webauthn/recovery.html", user=user, token=token)


def _token(body: dict[str, Any]) -> str:
    token = optional_str(body, "token", 100)
    if not token:
        raise APIError(400, "invalid_field", "Le champ « token » est manquant ou invalide.")
    return token


LINK_REFUSED = APIError(
    400,
    "recovery_link_invalid",
    "Ce lien de récupération n'est plus valable : demandez-en un nouveau depuis « J'ai perdu "
    "ma clé d'accès ».",
)


@bp.post("/webauthn/recovery/options")
def options() -> Response:
    body = read_json()
    try:
        user, _ = recovery.user_of(_token(body))
    except (tokens.TokenExpired, tokens.TokenUsed, tokens.TokenInvalid):
        raise LINK_REFUSED from None
    created = service.begin_registration(user, new_binding(), recovery=True)
    db.session().commit()
    return jsonify(created)


@bp.post("/webauthn/recovery/verify")
def verify() -> Response:
    body = read_json()
    token = _token(body)
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise APIError(
            400, "malformed_credential", "Le champ « credential » est manquant ou invalide."
        )
    session = db.session()
    try:
        user, is_recovery = recovery.spend(token)
    except (tokens.TokenExpired, tokens.TokenUsed, tokens.TokenInvalid):
        session.rollback()
        raise LINK_REFUSED from None
    try:
        row = service.finish_registration(
            user,
            credential,
            optional_str(body, "name", 64),
            browser_binding(),
            recovery=True,
        )
    except CeremonyError as exc:
        # The link is not spent (rolled back): the employer may try again while it lives.
        session.rollback()
        PASSKEY_CEREMONIES.labels("registration", exc.error).inc()
        current_app.logger.info("passkey recovery refused: %s", exc.error)
        return json_error(exc.status, exc.error, exc.message)
    passkey_added(user, row)
    landing = complete_login(user, method="passkey", recovery=is_recovery)
    session.commit()
    PASSKEY_CEREMONIES.labels("registration", "success").inc()
    if not is_recovery:
        # A passwordless sign-up's first passkey: on to the onboarding, as any first login.
        flash("Votre clé d'accès est enregistrée : vous êtes connecté.", "success")
        return jsonify({"redirect": landing})
    flash(
        "Votre nouvelle clé d'accès est enregistrée et vous êtes connecté. Si vous avez perdu "
        "une ancienne clé d'accès, supprimez-la ci-dessous.",
        "success",
    )
    return jsonify({"redirect": url_for("passkeys.manage")})
