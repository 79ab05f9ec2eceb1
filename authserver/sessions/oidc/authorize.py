"""The authorization endpoint: validate, make sure of the login, ask consent, issue the code.

A request that names an unknown client or a redirect URI not registered for it is answered
here with a French page, never redirected (RFC 6749 §4.1.2.1). Every other error goes back
to the client's redirect URI with the RFC's error code.
"""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import Blueprint, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from authserver import db
from authserver.models import utcnow
from authserver.sessions.login import current_auth_session
from authserver.sessions.oidc import claims, policy, storage
from authserver.sessions.oidc.server import server_of
from authserver.web import settings

bp = Blueprint("oidc_authorize", __name__)

BAD_REQUEST = (
    "Cette demande de connexion n'est pas valide : le service qui vous a envoyé ici "
    "est inconnu ou mal configuré. Retournez sur le site du service et réessayez."
)


def _error_page(message: str = BAD_REQUEST) -> tuple[str, int]:
    return render_template("errors/error.html", status=400, message=message), 400


def _error(error: OAuth2Error) -> Response | tuple[str, int]:
    if error.redirect_uri:
        status, _body, headers = error()
        return handoff(Response("", status=status, headers=headers))
    return _error_page()


def _redirect_error(redirect_uri: str, error: str, state: str | None) -> Response:
    params = [("error", error)]
    if state:
        params.append(("state", state))
    return handoff(redirect(add_params_to_uri(redirect_uri, params)))


def handoff(response: Response) -> Response:
    """A redirect to another site, made safe for navigations that began with one of our forms.

    Browsers apply ``form-action 'self'`` (our CSP) to every redirect of a form submission:
    login form → /oauth/authorize → the service would be blocked. When the navigation comes
    from our own pages (``Sec-Fetch-Site: same-origin``), the form's navigation ends here with
    a page that sends the browser on (``Refresh``, plus a link).
    """
    location = response.headers.get("Location", "")
    if response.status_code not in (301, 302, 303) or not location.startswith(("http:", "https:")):
        return response
    if request.headers.get("Sec-Fetch-Site") != "same-origin":
        return response
    if request.headers.get("Sec-Fetch-Mode") not in (None, "navigate"):
        return response
    page = Response(render_template("sessions/redirect.html", url=location), status=200)
    page.headers["Refresh"] = f"0; url={location}"
    return page


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> object:
    record = current_auth_session()
    user = record.user if record is not None else None
    server = server_of()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return _error(error)
    client = grant.client
    params = {key: request.args[key] for key in request.args}
    state = params.get("state")
    prompts = set((params.get("prompt") or "").split())
    now = utcnow()

    secret_key = settings().secret_key
    try:
        need = policy.decide(
            params=params,
            logged_in=record is not None,
            authenticated_at=record.authenticated_at if record else None,
            method=record.method if record else None,
            now=now,
            login_after=policy.read_marker(secret_key, params, now),
        )
    except policy.InvalidParameter:
        return _redirect_error(grant.redirect_uri, "invalid_request", state)
    if need is not policy.Need.NOTHING:
        if "none" in prompts:
            code = "login_required" if record is None else "interaction_required"
            return _redirect_error(grant.redirect_uri, code, state)
        marker = policy.sign_marker(secret_key, params, now)
        target = policy.return_path(request.path, params, marker)
        extra = {"passkey": "1"} if need is policy.Need.PASSKEY else {}
        return redirect(url_for("accounts.login", next=target, **extra))

    assert record is not None and user is not None
    scope = grant.request.scope or ""
    session = db.session()
    needs_consent = not client.first_party and (
        "consent" in prompts
        or not storage.consent_covers(session, user.id, client.client_id, scope)
    )
    if request.method == "GET" and needs_consent:
        if "none" in prompts:
            return _redirect_error(grant.redirect_uri, "consent_required", state)
        scopes = [item for item in scope.split() if item in claims.SCOPE_LABELS]
        return render_template(
            "sessions/consent.html",
            client=client,
            scopes=[(item, claims.SCOPE_LABELS[item]) for item in scopes],
            action=request.full_path,
            session_hours=max(1, settings().session_absolute // 3600),
        )
    if request.method == "POST" and needs_consent and request.form.get("decision") != "allow":
        return handoff(server.create_authorization_response(grant_user=None, grant=grant))
    if request.method == "POST" and needs_consent:
        storage.record_consent(session, user.id, client.client_id, scope)

    g.oidc_auth_session = record
    response = server.create_authorization_response(grant_user=user, grant=grant)
    session.commit()
    return handoff(response)


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Chromium asks for /favicon.ico when a page (the hand-off above) leaves at once."""
    return redirect(url_for("static", filename="vendor/dsfr/favicon/favicon.ico"), code=301)
