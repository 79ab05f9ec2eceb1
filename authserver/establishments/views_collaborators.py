"""The establishment's administrator: collaborators and access requests."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from authserver import db
from authserver.establishments import service
from authserver.establishments.blueprint import bp
from authserver.models import Membership


def _admin_membership() -> Membership:
    membership = service.active_membership(current_user)
    if membership is None or membership.role != "admin":
        abort(403)
    return membership


def _member(membership_id: int, admin: Membership) -> Membership:
    row = db.session().get(Membership, membership_id)
    if row is None or row.establishment_id != admin.establishment_id or row.id == admin.id:
        abort(404)
    return row


@bp.get("/establishment/collaborators")
@login_required
def collaborators() -> str:
    admin = _admin_membership()
    members = service.members_of(admin.establishment_id)
    return render_template(
        "establishments/collaborators.html",
        admin=admin,
        establishment=admin.establishment,
        pending=[m for m in members if m.status == "pending"],
        active=[m for m in members if m.status == "active"],
    )


@bp.post("/establishment/collaborators/<int:membership_id>/<decision>")
@login_required
def decide(membership_id: int, decision: str) -> Response:
    admin = _admin_membership()
    row = _member(membership_id, admin)
    if decision in ("grant", "refuse"):
        if row.status != "pending":
            abort(409)
        service.decide_membership(current_user, row, grant=decision == "grant")
        message = "Accès accordé." if decision == "grant" else "Demande refusée."
    elif decision == "remove":
        if row.status != "active":
            abort(409)
        service.remove_member(current_user, row)
        message = "Le collaborateur n'a plus accès à l'espace de l'établissement."
    else:
        abort(404)
    db.session().commit()
    flash(message, "success")
    return redirect(url_for("establishments.collaborators"))
