"""The passkey JSON API of the contract: four calls, errors in the contract's form."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from flask_login import current_user

from authserver import db
from authserver.alerts import events
from authserver.errors import APIError, json_error
from authserver.jsonapi import optional_str, read_json
from authserver.metrics import PASSKEY_CEREMONIES
from authserver.models import User
from authserver.sessions.completion import complete_login
from authserver.web import csrf
from authserver.webauthn import service
from authserver.webauthn.browser import browser_binding, new_binding, set_binding_cookie
from authserver.webauthn.errors import CeremonyError
from authserver.webauthn.notifications import passkey_added

bp = Blueprint("webauthn", __name__, url_prefix="/webauthn")


def _credential(body: dict[str, Any]) -> dict[str, Any]:
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise APIError(
            400, "malformed_credential", "Le champ « credential » est manquant ou invalide."
        )
    return credential


def _require_login() -> Any:
    if not current_user.is_authenticated:
        raise APIError(401, "login_required", "Vous devez être connecté.")
    return current_user


def _ceremony_failed(exc: CeremonyError) -> Response:
    return json_error(exc.status, exc.error, exc.message)


# CredentialMediationRequirement values a create() may carry; only "conditional" changes
# anything here (absent, "optional" and "required" are the modal ceremony).
MEDIATIONS = ("optional", "required", "conditional")


@bp.post("/register/options")
def register_options() -> Response:
    from authserver.sessions.login import recently_authenticated

    user = _require_login()
    body = read_json()
    mediation = optional_str(body, "mediation", 16)
    if mediation is not None and mediation not in MEDIATIONS:
        raise APIError(400, "invalid_field", "Le champ « mediation » est invalide.")
    conditional = mediation == "conditional"
    if conditional and not recently_authenticated():
        # A conditional create needs no gesture: offer it only right after a login (as
        # browsers do, after a password was just used), never to a session left open.
        raise APIError(
            403,
            "recent_login_required",
            "L'enregistrement automatique d'une clé d'accès n'est proposé que juste après "
            "une connexion.",
        )
    if not recently_authenticated():
        # Like every credential change (issue 11): a session left open, or a stolen cookie,
        # must not add a way in. The page sends the user to « Confirmez votre identité ».
        raise APIError(
            403,
            "reauth_required",
            "Pour ajouter une clé d'accès, confirmez d'abord votre identité.",
        )
    options = service.begin_registration(user, new_binding(), conditional=conditional)
    db.session().commit()
    return jsonify(options)


@bp.post("/register/verify")
def register_verify() -> Response:
    user = _require_login()
    body = read_json()
    credential = _credential(body)
    name = optional_str(body, "name", 64)
    try:
        row = service.finish_registration(user, credential, name, browser_binding())
    except CeremonyError as exc:
        PASSKEY_CEREMONIES.labels("registration", exc.error).inc()
        db.session().commit()  # the ceremony is spent either way
        current_app.logger.info("passkey registration refused: %s", exc.error)
        return _ceremony_failed(exc)
    passkey_added(user, row)
    db.session().commit()
    PASSKEY_CEREMONIES.labels("registration", "success").inc()
    return jsonify({"id": _b64(row.credential_id), "name": row.name})


@bp.post("/login/options")
@csrf.exempt
def login_options() -> Response:
    body = read_json()
    username = optional_str(body, "username", 254)
    options = service.begin_login(username.strip() if username else None, new_binding())
    db.session().commit()
    return jsonify(options)


@bp.post("/login/verify")
@csrf.exempt
def login_verify() -> Response:
    body = read_json()
    credential = _credential(body)
    next_url = optional_str(body, "next", 2000)
    try:
        user, _passkey = service.finish_login(credential, browser_binding())
    except CeremonyError as exc:
        PASSKEY_CEREMONIES.labels("authentication", exc.error).inc()
        events.record_login(
            method="passkey",
            outcome="failure",
            reason=exc.error,
            user=exc.user if isinstance(exc.user, User) else None,
        )
        db.session().commit()
        return _ceremony_failed(exc)
    target = complete_login(user, method="passkey", next_url=next_url)
    db.session().commit()
    PASSKEY_CEREMONIES.labels("authentication", "success").inc()
    return jsonify({"redirect": target})


def _b64(raw: bytes) -> str:
    from webauthn.helpers import bytes_to_base64url

    return bytes_to_base64url(raw)


bp.after_request(set_binding_cookie)
