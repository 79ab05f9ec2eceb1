"""Counsellor console: the certification queue, oldest first; certify or reject with a reason."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from authserver import db
from authserver.establishments import service
from authserver.establishments.blueprint import bp
from authserver.models import CertificationRequest, User, utcnow
from authserver.sessions import staff


def counselor_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        access = staff.current_access(staff.COUNSELOR_ROLES)
        if access is staff.Access.PASSKEY_REQUIRED:
            return staff.passkey_required_page()
        if access is not staff.Access.ALLOWED:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


STATUS_LABELS = {
    "pending": "En attente",
    "certified": "Compte certifié",
    "rejected": "Certification refusée",
    "abandoned": "Close",
}
METHOD_LABELS = {"online": "En ligne", "counselor": "Par un conseiller"}
DECIDED_SHOWN = 50


def decided_by_label(row: CertificationRequest) -> str:
    """Who decided: the counsellor's name, the online check, or the system (closed)."""
    if row.decided_by is not None:
        return f"{row.decided_by.display_name} ({row.decided_by.username})"
    if row.decided_by_id is None and row.method == "online" and row.status == "certified":
        return "Vérification d'identité en ligne"
    if row.status == "pending":
        return ""
    return "Automatiquement"


def account_label(row: CertificationRequest) -> str:
    if row.user is not None:
        return row.user.username
    return f"{row.account_username or '?'} (compte supprimé)"


def _labels() -> dict[str, object]:
    return {
        "status_labels": STATUS_LABELS,
        "method_labels": METHOD_LABELS,
        "decided_by_label": decided_by_label,
        "account_label": account_label,
    }


@bp.get("/counselor")
@counselor_required
def counselor_queue() -> str:
    if service.expire_stale_online_checks():
        db.session().commit()
    rows = list(
        db.session().scalars(
            select(CertificationRequest)
            .join(User, CertificationRequest.user_id == User.id)
            .where(
                CertificationRequest.status == "pending",
                CertificationRequest.method == "counselor",
                # Certified meanwhile (online): nothing left for a counsellor to do.
                User.certified_at.is_(None),
            )
            .order_by(CertificationRequest.created_at, CertificationRequest.id)
            .limit(200)
        )
    )
    decided = list(
        db.session().scalars(
            select(CertificationRequest)
            .where(CertificationRequest.status != "pending")
            .order_by(CertificationRequest.decided_at.desc(), CertificationRequest.id.desc())
            .limit(DECIDED_SHOWN)
        )
    )
    return render_template(
        "establishments/counselor_queue.html",
        rows=rows,
        decided=decided,
        now=utcnow(),
        **_labels(),
    )


@bp.get("/counselor/requests/<int:request_id>")
@counselor_required
def counselor_request(request_id: int) -> str:
    row = db.session().get(CertificationRequest, request_id)
    if row is None:
        abort(404)
    membership = service.membership_of(row.user) if row.user is not None else None
    return render_template(
        "establishments/counselor_request.html",
        row=row,
        membership=membership,
        now=utcnow(),
        **_labels(),
    )


@bp.post("/counselor/requests/<int:request_id>/<decision>")
@counselor_required
def counselor_decide(request_id: int, decision: str) -> Response | tuple[str, int]:
    session = db.session()
    row = session.get(CertificationRequest, request_id)
    if row is None:
        abort(404)
    if row.status == "pending" and row.user is not None and row.user.certified_at is not None:
        service.close_pending_requests(row.user, service.CLOSED_CERTIFIED)
        session.commit()
        flash("Ce compte est déjà certifié : la demande est close.", "error")
        return redirect(url_for("establishments.counselor_request", request_id=request_id))
    if row.status != "pending":
        flash("Cette demande a déjà été traitée.", "error")
        return redirect(url_for("establishments.counselor_request", request_id=request_id))
    reason = " ".join((request.form.get("reason") or "").split())[:500]
    if decision == "certify":
        service.certify(row, current_user, reason or None)
        flash(f"Le compte {row.user.username} est certifié.", "success")
    elif decision == "reject":
        if not reason:
            membership = service.membership_of(row.user)
            flash("Indiquez le motif du refus.", "error")
            return render_template(
                "establishments/counselor_request.html",
                row=row,
                membership=membership,
                now=utcnow(),
                reason_error="Indiquez le motif du refus.",
                **_labels(),
            ), 400
        service.reject(row, current_user, reason)
        flash(f"La demande de {row.user.username} est refusée.", "success")
    else:
        abort(404)
    session.commit()
    return redirect(url_for("establishments.counselor_queue"))
