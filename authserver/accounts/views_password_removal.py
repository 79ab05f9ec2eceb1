"""« Supprimer mon mot de passe » (issue 14): a passkey-only account, on the employer's
request, once it has another way back in (ways_in.py) and right after a passkey
re-authentication (a password typed on a phishing page must not be enough to remove it)."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from authserver import db
from authserver.accounts import recovery_codes, tokens, ways_in
from authserver.accounts.blueprint import bp
from authserver.alerts import events
from authserver.mail.outbox import enqueue
from authserver.models import utcnow
from authserver.sessions.login import recent_presence_method
from authserver.web import client_ip, settings
from authserver.webauthn import credentials

NOT_YET = (
    "Pour supprimer votre mot de passe, votre compte doit avoir deux clés d'accès, ou une clé "
    "d'accès et des codes de récupération."
)


def may_remove_password(user_id: int, has_password: bool) -> bool:
    session = db.session()
    return ways_in.may_remove_password(
        has_password=has_password,
        passkeys=credentials.count_for(session, user_id),
        recovery_codes=recovery_codes.left(session, user_id),
    )


@bp.post("/account/password/remove")
@login_required
def remove_password() -> Response:
    manage = url_for("passkeys.manage")
    if current_user.password_hash is None:
        flash("Votre compte n'a déjà plus de mot de passe.", "info")
        return redirect(manage)
    if not may_remove_password(current_user.id, has_password=True):
        flash(NOT_YET, "error")
        return redirect(manage)
    if recent_presence_method() != "passkey":
        flash(
            "Pour supprimer votre mot de passe, confirmez d'abord votre identité avec votre clé "
            "d'accès.",
            "info",
        )
        return redirect(url_for("passkeys.reauth", next=manage))
    session = db.session()
    now = utcnow()
    current_user.password_hash = None
    current_user.password_changed_at = now
    current_user.password_reset_required = False
    tokens.expire_pending(session, user_id=current_user.id, purpose=tokens.PASSWORD_RESET)
    base = settings().base_url
    enqueue(
        kind="password_removed",
        to=current_user.email,
        subject="Le mot de passe de votre compte France Travail a été supprimé",
        template="password_removed",
        user=current_user,
        when=now,
        passkeys_link=base + manage,
        security_link=base + url_for("alerts.security_info"),
    )
    session.commit()
    events.emit("password_removed", account=current_user.username, ip=client_ip())
    flash(
        "Votre mot de passe est supprimé : vous vous connectez désormais avec vos clés d'accès.",
        "success",
    )
    return redirect(manage)
