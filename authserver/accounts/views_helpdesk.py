"""« Assistance aux comptes » (``/helpdesk``): find an account, see its state and its ways in,
apply a helpdesk action with its reason. Thin glue over :mod:`authserver.accounts.helpdesk`,
which decides who may do what and writes the audit row.

Open to the staff roles on a passkey session (sessions/staff.py), like the other staff
tools. Accounts are addressed by their public id, never by their sequential row id.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from authserver import db
from authserver.accounts import account_search, helpdesk
from authserver.models import AuthSession, User, WebAuthnCredential, utcnow
from authserver.sessions import staff

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")

RESULTS_SHOWN = 50
QUERY_MAX = 254


helpdesk_page = staff.staff_page(staff.STAFF_ROLES)


@bp.get("")
@helpdesk_page
def search() -> str:
    query = request.args.get("q", "")[:QUERY_MAX]
    results = (
        account_search.search(db.session(), query, limit=RESULTS_SHOWN) if query.strip() else None
    )
    return render_template("accounts/helpdesk_search.html", query=query, results=results)


PUBLIC_ID = re.compile(r"[0-9a-f]{32}")


def _account_or_404(public_id: str) -> User:
    if not PUBLIC_ID.fullmatch(public_id):  # a NUL would be a 500 on PostgreSQL
        abort(404)
    account = db.session().scalar(select(User).where(User.public_id == public_id))
    if account is None:
        abort(404)
    return account


def _page(
    account: User, *, status: int = 200, failed: str | None = None, error: str | None = None
) -> tuple[str, int]:
    session = db.session()
    passkeys = list(
        session.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == account.id)
            .order_by(WebAuthnCredential.id)
        )
    )
    live_sessions = session.scalar(
        select(func.count())
        .select_from(AuthSession)
        .where(
            AuthSession.user_id == account.id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > utcnow(),
        )
    )
    available = [
        action
        for action in helpdesk.CONSOLE_ACTIONS
        if action != "remove_passkey"
        and helpdesk.permitted(
            actor_role=current_user.role, action=action, target_role=account.role
        )
    ]
    body = render_template(
        "accounts/helpdesk_account.html",
        account=account,
        passkeys=passkeys,
        live_sessions=live_sessions or 0,
        available=available,
        may_remove_one=helpdesk.permitted(
            actor_role=current_user.role, action="remove_passkey", target_role=account.role
        ),
        labels=helpdesk.ACTION_LABELS,
        trail=helpdesk.history(session, account.id),
        failed=failed,
        error=error,
        typed=request.form.get("reason", "") if failed else "",
    )
    return body, status


@bp.get("/accounts/<public_id>")
@helpdesk_page
def account(public_id: str) -> tuple[str, int]:
    return _page(_account_or_404(public_id))


@bp.post("/accounts/<public_id>/actions/<action>")
@helpdesk_page
def act(public_id: str, action: str) -> Any:
    if action not in helpdesk.CONSOLE_ACTIONS:
        abort(404)
    target = _account_or_404(public_id)
    passkey = request.form.get("passkey", "")
    passkey_id = int(passkey) if passkey.isdigit() and len(passkey) < 12 else None
    if action == "remove_passkey" and passkey_id is None:
        return _page(target, status=400, failed=action, error="Choisissez la clé d'accès.")
    session = db.session()
    actor = helpdesk.Actor.of(current_user)
    try:
        outcome = helpdesk.perform(
            session,
            target=target,
            actor=actor,
            action=action,
            reason=request.form.get("reason", ""),
            passkey_id=passkey_id,
        )
    except helpdesk.Refused as exc:
        session.rollback()
        return _page(_account_or_404(public_id), status=400, failed=action, error=str(exc))
    session.commit()
    flash(outcome.message, "success")
    response: Response = redirect(url_for("helpdesk.account", public_id=public_id), code=303)
    return response
