"""Operations endpoints: liveness, readiness."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import func, select, text

from authserver import db
from authserver.models import OutboxMail
from authserver.throttle import throttle

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Process alive; touches nothing, so benchmarks use it as the bare endpoint."""
    return Response("ok\n", mimetype="text/plain")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    status = 200
    session = db.session()
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        pending = session.scalar(
            select(func.count()).select_from(OutboxMail).where(OutboxMail.status == "pending")
        )
        checks["outbox"] = f"ok ({pending} en attente)"
    except Exception:
        session.rollback()
        checks["database"] = "indisponible"
        checks["outbox"] = "indisponible"
        status = 503
    if current_app.config["AUTHSERVER"].redis_url:
        try:
            healthy = throttle().storage.check()
        except Exception:
            healthy = False
        checks["redis"] = "ok" if healthy else "indisponible"
        if not healthy:
            status = 503
    return jsonify({"status": "ok" if status == 200 else "unavailable", "checks": checks}), status


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
