"""OpenID Connect endpoints for programs: discovery, JWKS, token, userinfo, revocation,
introspection, end session. Answers and errors in the RFCs' JSON forms."""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, jsonify, render_template, request, url_for

from authserver import db
from authserver.sessions.login import current_auth_session
from authserver.sessions.oidc import claims, keys
from authserver.sessions.oidc.authorize import handoff
from authserver.sessions.oidc.server import issuer, server_of
from authserver.web import csrf, settings

bp = Blueprint("oidc", __name__)

CACHEABLE = f"public, max-age={keys.JWKS_MAX_AGE}"  # rotation publishes keys this far ahead


def _url(endpoint: str) -> str:
    return settings().base_url + url_for(endpoint)


def discovery_document() -> dict[str, Any]:
    return {
        "issuer": issuer(),
        "authorization_endpoint": _url("oidc_authorize.authorize"),
        "token_endpoint": _url("oidc.token"),
        "userinfo_endpoint": _url("oidc.userinfo"),
        "jwks_uri": _url("oidc.jwks"),
        "revocation_endpoint": _url("oidc.revoke"),
        "introspection_endpoint": _url("oidc.introspect"),
        "end_session_endpoint": _url("oidc.end_session"),
        "scopes_supported": list(claims.SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [keys.ALG],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(claims.CLAIMS_SUPPORTED),
        "acr_values_supported": list(claims.ACR_VALUES),
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "ui_locales_supported": ["fr-FR"],
    }


@bp.get("/.well-known/openid-configuration")
def configuration() -> Response:
    response = jsonify(discovery_document())
    response.headers["Cache-Control"] = CACHEABLE
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    session = db.session()
    document = keys.public_jwks(session)
    if not document["keys"]:  # first start: make the first key now, not at the first login
        keys.signing_key(session, settings().secret_key, fallbacks=settings().secret_key_fallbacks)
        session.commit()
        document = keys.public_jwks(session)
    response = jsonify(document)
    response.headers["Cache-Control"] = CACHEABLE
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


bp.add_url_rule("/oauth/jwks", "jwks_alias", jwks)

# Browser-based public clients (PKCE) call these from another origin; no cookie is involved.
CORS_ENDPOINTS = {"oidc.token", "oidc.userinfo", "oidc.revoke"}


@bp.after_request
def _cors(response: Response) -> Response:
    if request.endpoint in CORS_ENDPOINTS:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


@bp.errorhandler(OAuth2Error)
def _protocol_error(error: OAuth2Error) -> Response:
    """An Authlib error raised outside Authlib's own handling, the RFC's JSON error all the
    same. Authlib builds its request object before its try blocks, and that step raises too:
    insecure_transport for a URL that is not https (an http server reached under a name
    that is not loopback's), found by fuzzing as a 500 (issue 11)."""
    return server_of().handle_error_response(request, error)  # type: ignore[no-any-return]


def _committed(response: Response | None) -> Response | None:
    # Spent codes, rotated or revoked families are kept even when the answer is an error.
    db.session().commit()
    return response


@bp.post("/oauth/token")
@csrf.exempt
def token() -> Response:
    return _committed(server_of().create_token_response())  # type: ignore[return-value]


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo() -> Response:
    return server_of().create_endpoint_response("userinfo")  # type: ignore[return-value]


@bp.post("/oauth/revoke")
@csrf.exempt
def revoke() -> Response:
    return _committed(server_of().create_endpoint_response("revocation"))  # type: ignore[return-value]


@bp.post("/oauth/introspect")
@csrf.exempt
def introspect() -> Response:
    return server_of().create_endpoint_response("introspection")  # type: ignore[return-value]


@bp.route("/oauth/logout", methods=["GET", "POST"])
@csrf.exempt  # services may POST the logout request; our own confirmation form is checked below
def end_session() -> object:
    server = server_of()
    try:
        validated = server.validate_endpoint_request("end_session")
    except OAuth2Error:
        page = render_template(
            "errors/error.html",
            status=400,
            message="Cette demande de déconnexion n'est pas valide.",
        )
        return page, 400
    confirmed = request.method == "POST" and request.form.get("confirm") == "1"
    if confirmed:
        csrf.protect()
    record = current_auth_session()
    hinted = validated.id_token_claims or {}
    same_user = record is not None and hinted.get("sub") == record.user.public_id
    if record is not None and not same_user and not confirmed:
        client = validated.client
        return render_template(
            "sessions/logout_confirm.html",
            client_name=client.name if client is not None else None,
            action=request.full_path,
        )
    response = server.create_endpoint_response("end_session", validated)
    db.session().commit()
    if response is not None:
        return handoff(response)
    return render_template("sessions/logged_out.html")
