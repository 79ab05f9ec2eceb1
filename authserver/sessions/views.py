"""« Mes sessions »: the user's active sessions (device, browser, IP, start, last activity,
method), revoke one or all the others. A revocation is immediate everywhere: pages,
``/auth/verify``, userinfo, introspection and refresh all read the same session row.

Below them, the services (OpenID Connect clients) the user let in or that hold tokens of
theirs, each with « Retirer l'autorisation »: the consent is forgotten, that service's tokens
are revoked and it gets a back-channel logout; the sessions themselves stay open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from authserver import db
from authserver.alerts.devices import describe
from authserver.models import AuthSession, Device, utcnow
from authserver.plural import plural
from authserver.sessions import store
from authserver.sessions.login import current_auth_session, lifetimes, recently_authenticated
from authserver.sessions.oidc import backchannel, storage
from authserver.sessions.oidc.claims import SCOPE_LABELS, SCOPES, session_sid

bp = Blueprint("my_sessions", __name__)

METHODS = {"password": "Mot de passe", "passkey": "Clé d'accès"}


@dataclass(frozen=True)
class SessionView:
    sid: str
    current: bool
    browser: str
    system: str
    ip: str
    started_at: datetime
    last_seen_at: datetime
    method: str


def _live_sessions(user_id: int) -> list[tuple[AuthSession, Device | None]]:
    now = utcnow()
    rows = db.session().execute(
        select(AuthSession, Device)
        .outerjoin(Device, Device.id == AuthSession.device_id)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .order_by(AuthSession.last_seen_at.desc())
    )
    return [(record, device) for record, device in rows if store.is_live(record, lifetimes(), now)]


def _view(record: AuthSession, device: Device | None, current: bytes) -> SessionView:
    browser, system = describe(record.user_agent)
    if device is not None and device.browser:
        browser, system = device.browser, device.system or system
    return SessionView(
        sid=session_sid(record.id_hash),
        current=record.id_hash == current,
        browser=browser,
        system=system,
        ip=record.ip or "inconnue",
        started_at=record.created_at,
        last_seen_at=record.last_seen_at,
        method=METHODS.get(record.method, record.method),
    )


@dataclass(frozen=True)
class ServiceView:
    client_id: str
    name: str
    first_party: bool
    shares: list[str]  # what it may read, in the consent page's words
    consented_at: datetime | None
    last_login_at: datetime | None
    # (scope, label) the user may withdraw one by one: a third party's consent, not « openid »
    narrowable: list[tuple[str, str]]


def _services(user_id: int) -> list[ServiceView]:
    found = storage.connected_services(db.session(), user_id, lifetimes())
    return [
        ServiceView(
            client_id=item.client_id,
            name=item.name,
            first_party=item.first_party,
            shares=[SCOPE_LABELS[scope] for scope in SCOPES if scope in item.scope.split()],
            consented_at=item.consented_at,
            last_login_at=item.last_login_at,
            narrowable=[
                (scope, SCOPE_LABELS[scope])
                for scope in SCOPES
                if scope != "openid" and scope in item.scope.split()
            ]
            if item.consented_at is not None and not item.first_party
            else [],
        )
        for item in found
    ]


@bp.get("/account/sessions")
@login_required
def sessions() -> str:
    current = current_auth_session()
    assert current is not None
    items = [_view(r, d, current.id_hash) for r, d in _live_sessions(current_user.id)]
    items.sort(key=lambda item: not item.current)
    return render_template(
        "sessions/my_sessions.html", sessions=items, services=_services(current_user.id)
    )


def _confirm_first() -> Response | None:
    """Closing sessions needs a recent authentication (ASVS 7.5.2): a stolen cookie must not
    log the owner out of their own browsers."""
    if recently_authenticated():
        return None
    flash("Pour fermer une session, confirmez d'abord votre identité.", "info")
    return redirect(url_for("passkeys.reauth", next=url_for("my_sessions.sessions")))


@bp.post("/account/sessions/<sid>/revoke")
@login_required
def revoke_one(sid: str) -> Response:
    current = current_auth_session()
    assert current is not None
    if (confirm := _confirm_first()) is not None:
        return confirm
    for record, _device in _live_sessions(current_user.id):
        if session_sid(record.id_hash) == sid:
            if record.id_hash == current.id_hash:
                abort(400)  # this browser: « Se déconnecter »
            store.revoke(db.session(), record.id_hash, "user_revoked")
            db.session().commit()
            flash("La session a été fermée.", "success")
            return redirect(url_for("my_sessions.sessions"))
    abort(404)


@bp.post("/account/sessions/revoke-others")
@login_required
def revoke_others() -> Response:
    current = current_auth_session()
    assert current is not None
    if (confirm := _confirm_first()) is not None:
        return confirm
    count = store.revoke_all(db.session(), current_user.id, "user_revoked", keep=current.id_hash)
    db.session().commit()
    flash(
        f"{plural(count, 'autre session fermée', 'autres sessions fermées')}."
        if count
        else "Aucune autre session ouverte.",
        "success",
    )
    return redirect(url_for("my_sessions.sessions"))


@bp.post("/account/services/<client_id>/withdraw")
@login_required
def withdraw_service(client_id: str) -> Response:
    """« Retirer l'autorisation » for one service (only one the page listed for this user)."""
    listed = {item.client_id: item for item in _services(current_user.id)}
    service = listed.get(client_id)
    if service is None:
        abort(404)
    session = db.session()
    backchannel.queue_service_logouts(session, current_user.id, client_id, "user_withdrew")
    storage.withdraw_service(session, current_user.id, client_id, "user_withdrew")
    session.commit()
    flash(f"L'autorisation de « {service.name} » a été retirée.", "success")
    return redirect(url_for("my_sessions.sessions"))


@bp.post("/account/services/<client_id>/scopes/<scope>/withdraw")
@login_required
def narrow_service(client_id: str, scope: str) -> Response:
    """« Retirer » one item of what a service may read (the rest of the consent stays)."""
    service = {item.client_id: item for item in _services(current_user.id)}.get(client_id)
    if service is None or service.first_party or scope not in SCOPE_LABELS:
        abort(404)
    session = db.session()
    backchannel.queue_service_logouts(session, current_user.id, client_id, "user_narrowed")
    if not storage.narrow_consent(session, current_user.id, client_id, scope, "user_narrowed"):
        session.rollback()
        abort(404)
    session.commit()
    flash(
        f"« {service.name} » n'a plus accès à : {SCOPE_LABELS[scope]}. Le service vous "
        "reconnectera et vous demandera votre accord s'il en a besoin.",
        "success",
    )
    return redirect(url_for("my_sessions.sessions"))
