"""Passkey pages: what a passkey is, the offer after a password login, the user's passkeys."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask import session as flask_session
from flask_login import current_user, login_required
from webauthn.helpers import bytes_to_base64url
from werkzeug.wrappers import Response

from authserver import db
from authserver.accounts import password_attempt, recovery_codes, ways_in
from authserver.accounts.service import LoginOutcome
from authserver.alerts import events
from authserver.jsonapi import FORBIDDEN_CHARACTERS
from authserver.models import User, utcnow
from authserver.plural import plural
from authserver.sessions import login_core
from authserver.sessions.completion import landing_url, safe_next
from authserver.sessions.login import (
    confirm_presence,
    current_auth_session,
    recently_authenticated,
)
from authserver.web import client_ip, settings
from authserver.webauthn import credentials
from authserver.webauthn.notifications import passkey_removed
from authserver.webauthn.providers import provider_name

bp = Blueprint("passkeys", __name__)

# Credential ids deleted by this browser's user, kept in the signed session cookie until the
# passkeys page has told the browser (Signal API). Never read from the URL: a crafted link
# could otherwise make a password manager hide a passkey that still works.
REMOVED_KEY = "passkeys_removed"
MAX_REMOVED = 10


def should_offer(user: User) -> bool:
    return login_core.offer_due(
        refused=user.passkey_offer_refused,
        after=user.passkey_offer_after,
        passkeys=lambda: credentials.count_for(db.session(), user.id),
        now=utcnow(),
    )


def _next() -> str:
    return safe_next(request.values.get("next")) or landing_url(current_user)


@bp.get("/connexion-sans-mot-de-passe")
def about() -> str:
    """« En savoir plus »: what the passwordless login is, for anyone (login and offer pages)."""
    return render_template("webauthn/about.html")


@bp.get("/passkeys/offer")
@login_required
def offer() -> object:
    if credentials.count_for(db.session(), current_user.id) > 0:
        return redirect(_next())
    return render_template("webauthn/offer.html", next_url=_next())


@bp.post("/passkeys/offer/later")
@login_required
def offer_later() -> Response:
    current_user.passkey_offer_after = utcnow() + timedelta(seconds=settings().passkey_offer_delay)
    db.session().commit()
    return redirect(_next())


@bp.post("/passkeys/offer/never")
@login_required
def offer_never() -> Response:
    current_user.passkey_offer_refused = True
    db.session().commit()
    flash(
        "C'est noté : nous ne vous proposerons plus la connexion sans mot de passe. "
        "Vous pourrez toujours l'activer depuis la page « Mes clés d'accès ».",
        "info",
    )
    return redirect(_next())


@bp.get("/account/passkeys")
@login_required
def manage() -> str:
    rows = credentials.for_user(db.session(), current_user.id)
    live = {bytes_to_base64url(row.credential_id) for row in rows}
    # Signal only what this user deleted and no passkey of theirs still uses.
    deleted = flask_session.pop(REMOVED_KEY) if REMOVED_KEY in flask_session else []
    removed = [
        credential_id
        for user_id, credential_id in deleted
        if user_id == current_user.id and credential_id not in live
    ]
    codes_left = recovery_codes.left(db.session(), current_user.id) if rows else 0
    items = [
        {
            "row": row,
            "provider": provider_name(row.aaguid),
            "id_b64": bytes_to_base64url(row.credential_id),
        }
        for row in rows
    ]
    return render_template(
        "webauthn/manage.html",
        items=items,
        rp_id=settings().rp_id,
        user_handle_b64=bytes_to_base64url(current_user.user_handle),
        removed_ids=removed,
        codes_left=codes_left,
        may_remove_password=ways_in.may_remove_password(
            has_password=current_user.password_hash is not None,
            passkeys=len(rows),
            recovery_codes=codes_left,
        ),
    )


@bp.post("/account/passkeys/<int:passkey_id>/rename")
@login_required
def rename(passkey_id: int) -> Response:
    row = credentials.owned(db.session(), current_user.id, passkey_id)
    # Control characters (a NUL is a 500 on PostgreSQL) go; runs of blanks become one space.
    raw = FORBIDDEN_CHARACTERS.sub(" ", request.form.get("name") or "")
    name = " ".join(raw.split())[:64]
    if row is None:
        flash("Cette clé d'accès n'existe pas.", "error")
    elif not name:
        flash("Veuillez saisir un nom pour la clé d'accès.", "error")
    else:
        events.after_commit(
            db.session(),
            "passkey_renamed",
            account=current_user.username,
            ip=client_ip(),
            passkey=name,
            previous_name=row.name,
        )
        row.name = name
        db.session().commit()
        flash("La clé d'accès a été renommée.", "success")
    return redirect(url_for("passkeys.manage"))


@bp.post("/account/passkeys/<int:passkey_id>/delete")
@login_required
def delete(passkey_id: int) -> Response:
    session = db.session()
    row = credentials.owned(session, current_user.id, passkey_id)
    if row is None:
        flash("Cette clé d'accès n'existe pas.", "error")
        return redirect(url_for("passkeys.manage"))
    if not recently_authenticated():
        flash("Pour supprimer une clé d'accès, confirmez d'abord votre identité.", "info")
        return redirect(url_for("passkeys.reauth", next=url_for("passkeys.manage")))
    if not ways_in.may_remove(
        has_password=current_user.password_hash is not None,
        passkeys=credentials.count_for(session, current_user.id),
        passkeys_removed=1,
    ):
        flash(
            "Impossible de supprimer votre seule clé d'accès : votre compte n'aurait plus "
            "aucun moyen de connexion. Définissez d'abord un mot de passe.",
            "error",
        )
        return redirect(url_for("passkeys.manage"))
    removed = [current_user.id, bytes_to_base64url(row.credential_id)]
    passkey_removed(current_user, row)
    session.delete(row)
    session.commit()
    earlier = flask_session.get(REMOVED_KEY, [])[-(MAX_REMOVED - 1) :]
    flask_session[REMOVED_KEY] = [*earlier, removed]
    flash("La clé d'accès a été supprimée.", "success")
    return redirect(url_for("passkeys.manage"))


@bp.post("/account/passkeys/<int:passkey_id>/confirm")
@login_required
def confirm(passkey_id: int) -> Response:
    """The owner vouches for a passkey suspended by « Ce n'était pas moi »."""
    row = credentials.owned(db.session(), current_user.id, passkey_id)
    if row is None:
        flash("Cette clé d'accès n'existe pas.", "error")
    elif not recently_authenticated():
        flash("Pour confirmer une clé d'accès, confirmez d'abord votre identité.", "info")
        return redirect(url_for("passkeys.reauth", next=url_for("passkeys.manage")))
    else:
        row.review_required = False
        db.session().commit()
        flash("La clé d'accès est de nouveau utilisable.", "success")
    return redirect(url_for("passkeys.manage"))


@bp.route("/account/reauth", methods=["GET", "POST"])
@login_required
def reauth() -> object:
    """« Confirmez votre identité »: a password (same throttle and events as the login), or a
    passkey (a passkey login again in this browser, run by static/js/reauth.js)."""
    error, status, headers = None, 200, {}
    if request.method == "POST":
        tried = password_attempt.attempt(
            current_user.username,
            request.form.get("password") or "",
            user=current_user,
            context=password_attempt.REAUTH,
        )
        if tried.outcome is LoginOutcome.OK:
            confirm_presence("password")
            record = current_auth_session()
            events.record_login(
                method="password",
                outcome="success",
                reason=password_attempt.REAUTH,
                user=current_user,
                device_id=record.device_id if record else None,
            )
            db.session().commit()
            return redirect(_next())
        db.session().commit()
        if tried.throttled:
            minutes = max(1, (tried.retry_after + 59) // 60)
            error = (
                "Trop de tentatives. Pour votre sécurité, réessayez dans "
                f"{plural(minutes, 'minute')}, "
                "ou confirmez avec votre clé d'accès."
            )
            status, headers = 429, {"Retry-After": str(tried.retry_after)}
        elif tried.outcome is LoginOutcome.RESET_REQUIRED:
            error = (
                "Vous devez d'abord choisir un nouveau mot de passe (« Mot de passe oublié ? »)."
            )
            status = 403
        else:
            error, status = "Mot de passe incorrect.", 401
    has_passkey = credentials.count_for(db.session(), current_user.id) > 0
    page = render_template(
        "webauthn/reauth.html",
        error=error,
        next_url=_next(),
        has_password=current_user.password_hash is not None,
        has_passkey=has_passkey,
    )
    return page, status, headers
