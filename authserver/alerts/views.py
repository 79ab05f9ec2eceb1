"""Public security pages: the « Information sécurité » guidance and « Ce n'était pas moi »."""

from __future__ import annotations

from flask import Blueprint, render_template

from authserver import db
from authserver.accounts import tokens
from authserver.alerts import not_me as reports
from authserver.alerts.devices import describe, set_device_cookie

bp = Blueprint("alerts", __name__)
bp.after_app_request(set_device_cookie)


@bp.record_once
def _load_user_agent_parser(_state: object) -> None:
    """ua-parser loads its regexes at its first use (~80 ms here): at start-up, not during
    the first new-device login."""
    describe("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")


@bp.get("/securite")
def security_info() -> str:
    return render_template("alerts/security_info.html")


def _link_problem(exc: Exception) -> tuple[str, int]:
    problem = {
        tokens.TokenExpired: "expired",
        tokens.TokenUsed: "used",
    }.get(type(exc), "invalid")
    status = 404 if problem == "invalid" else 410
    return render_template("alerts/not_me_problem.html", problem=problem), status


@bp.get("/alerts/not-me/<token>")
def not_me(token: str) -> object:
    try:
        user, data = reports.pending_report(token)
    except (tokens.TokenInvalid, tokens.TokenExpired, tokens.TokenUsed) as exc:
        return _link_problem(exc)
    return render_template("alerts/not_me_confirm.html", user=user, data=data, token=token)


@bp.post("/alerts/not-me/<token>")
def not_me_submit(token: str) -> object:
    try:
        user = reports.report(token)
        db.session().commit()
    except (tokens.TokenInvalid, tokens.TokenExpired, tokens.TokenUsed) as exc:
        db.session().rollback()
        return _link_problem(exc)
    return render_template("alerts/not_me_done.html", user=user)
