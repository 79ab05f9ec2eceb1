"""Recovery codes in the browser: made from « Mes clés d'accès » (after a re-authentication,
shown once), used from « J'ai perdu ma clé d'accès » (leads to the recovery link's page)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from authserver import db
from authserver.accounts import recovery, recovery_codes, tokens
from authserver.accounts.forms import RecoveryCodeForm
from authserver.accounts.service import find_by_username
from authserver.alerts import events
from authserver.mail.outbox import enqueue
from authserver.models import utcnow
from authserver.plural import plural
from authserver.sessions.login import recently_authenticated
from authserver.throttle import throttle
from authserver.web import client_ip, settings
from authserver.webauthn.recovery_views import bp

WRONG = "Identifiant ou code de récupération incorrect."
# Per account: 5 wrong codes an hour; 60-bit codes make guessing hopeless well before that.
ACCOUNT_ATTEMPTS_PER_HOUR = 5


@bp.post("/account/recovery-codes")
@login_required
def generate() -> Any:
    if not recently_authenticated():
        flash("Pour créer des codes de récupération, confirmez d'abord votre identité.", "info")
        return redirect(url_for("passkeys.reauth", next=url_for("passkeys.manage")))
    session = db.session()
    codes = recovery_codes.generate(session, current_user.id)
    base = settings().base_url
    enqueue(
        kind="recovery_codes",
        to=current_user.email,
        subject="Nouveaux codes de récupération pour votre compte France Travail",
        template="recovery_codes_created",
        user=current_user,
        when=utcnow(),
        count=len(codes),
        passkeys_link=base + url_for("passkeys.manage"),
        security_link=base + url_for("alerts.security_info"),
    )
    session.commit()
    events.emit("recovery_codes_generated", account=current_user.username, ip=client_ip())
    page = render_template("webauthn/recovery_codes.html", codes=codes)
    return page, 200, {"Cache-Control": "no-store"}


@bp.route("/recovery/code", methods=["GET", "POST"])
def use_code() -> Any:
    form = RecoveryCodeForm()
    if not form.is_submitted():
        return render_template("webauthn/recovery_code.html", form=form)
    if not form.validate():
        return render_template("webauthn/recovery_code.html", form=form), 400
    verdict = throttle().hit_ip("recovery-code", 10, 3600, client_ip())
    if not verdict.allowed:
        minutes = max(1, (verdict.retry_after + 59) // 60)
        flash(f"Trop de tentatives. Réessayez dans {plural(minutes, 'minute')}.", "error")
        page = render_template("webauthn/recovery_code.html", form=form)
        return page, 429, {"Retry-After": str(verdict.retry_after)}
    session = db.session()
    user = find_by_username(form.username.data)
    allowed = (
        user is not None
        and recovery.may_recover(user)
        and throttle()
        .hit("recovery-code-acct", ACCOUNT_ATTEMPTS_PER_HOUR, 3600, str(user.id))
        .allowed
    )
    if user is None or not allowed or not recovery_codes.redeem(session, user.id, form.code.data):
        session.commit()
        form.code.errors = [WRONG]
        form.code.data = ""
        return render_template("webauthn/recovery_code.html", form=form), 400
    token = tokens.issue(
        session,
        purpose=tokens.PASSKEY_RECOVERY,
        user_id=user.id,
        ttl=recovery.RECOVERY_TTL,
        supersede=True,
    )
    session.commit()
    events.emit("recovery_code_used", account=user.username, ip=client_ip())
    left = recovery_codes.left(session, user.id)
    flash(
        f"Code de récupération accepté (il vous en reste {left}). Créez maintenant votre "
        "nouvelle clé d'accès.",
        "success",
    )
    return redirect(url_for("recovery.page", token=token), code=303)
