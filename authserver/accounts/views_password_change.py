"""« Changer mon mot de passe », logged in: the current password first (ASVS 6.2.3).

The current password is checked like a login (accounts/password_attempt.py: the same
throttle, an event for every refusal), so this form cannot be used to guess it. An account
without a password (passkey only) sets one after a recent authentication instead. Every other
session ends; this browser's stays.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from authserver import db
from authserver.accounts import breached, password_attempt, service
from authserver.accounts.blueprint import bp
from authserver.accounts.forms import ChangePasswordForm
from authserver.sessions.login import current_auth_session, recently_authenticated

CHANGE = "change"  # the context of the current password's attempt (its events' reason)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> object:
    needs_current = current_user.password_hash is not None
    if not needs_current and not recently_authenticated():
        flash("Pour définir un mot de passe, confirmez d'abord votre identité.", "info")
        return redirect(url_for("passkeys.reauth", next=url_for("accounts.change_password")))
    form = ChangePasswordForm()

    def page(status: int = 200, **context: object) -> tuple[str, int]:
        return render_template(
            "accounts/change_password.html", form=form, needs_current=needs_current, **context
        ), status

    if not form.is_submitted():
        return page()
    valid = form.validate_for(
        username=current_user.username, email=current_user.email, needs_current=needs_current
    )
    if not valid or not breached.check_field(form.password, form.password.data):
        return page(400)
    if needs_current:
        tried = password_attempt.attempt(
            current_user.username,
            form.current_password.data,
            user=current_user,
            context=CHANGE,
        )
        if tried.outcome is not service.LoginOutcome.OK:
            db.session().commit()
            if tried.throttled:
                minutes = max(1, (tried.retry_after + 59) // 60)
                form.current_password.errors = [
                    f"Trop de tentatives. Réessayez dans {minutes} minute"
                    f"{'s' if minutes > 1 else ''}, ou utilisez « Mot de passe oublié ? »."
                ]
                return page(429)
            form.current_password.errors = ["Mot de passe actuel incorrect."]
            return page(401)
    record = current_auth_session()
    service.set_password_hash(
        current_user,
        service.hashing().hash(form.password.data),
        reason="password_changed",
        keep_session=record.id_hash if record else None,
    )
    db.session().commit()
    flash("Votre mot de passe a été modifié. Vos autres sessions ont été fermées.", "success")
    return redirect(url_for("accounts.account"))
