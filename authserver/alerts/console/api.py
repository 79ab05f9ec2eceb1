"""The security API for tools: ``/api/security/alerts`` and ``/api/security/events``.

Same filters as the pages, plus ``cursor`` (opaque, from the previous answer's
``next_cursor``) and ``limit`` (1–500, default 100). Keyset on
``(created_at, id)`` descending: no OFFSET, no duplicates or gaps while rows are
added. Answers ``{"items": [...], "next_cursor": "..." | null}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from authserver import db
from authserver.alerts.console import cursor, queries
from authserver.alerts.console.access import CallerRefused, api_caller
from authserver.alerts.console.filters import ALERT_PARAMS, EVENT_PARAMS, InvalidFilters, parse
from authserver.errors import APIError, json_error

bp = Blueprint("security_api", __name__, url_prefix="/api/security")


@bp.errorhandler(CallerRefused)
def _refused(exc: CallerRefused) -> Response:
    response = json_error(exc.status, exc.error, exc.message)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="authserver-security"'
    return response


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def alert_item(row: Any) -> dict[str, Any]:
    alert = row[0]
    return {
        "id": alert.id,
        "created_at": _iso(alert.created_at),
        "updated_at": _iso(alert.updated_at),
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "account": row.username,
        "siret": row.siret,
        "ip": alert.ip or None,
        "details": alert.details or {},
    }


def event_item(row: Any) -> dict[str, Any]:
    event = row[0]
    return {
        "id": event.id,
        "created_at": _iso(event.created_at),
        "account": row.username,
        "username_attempt": event.username_attempt or None,
        "siret": row.siret,
        "ip": event.ip or None,
        "user_agent": event.user_agent,
        "method": event.method,
        "outcome": event.outcome,
        "reason": event.reason or None,
        "device_id": event.device_id,
    }


def _page(
    allowed: tuple[str, ...],
    page: Callable[..., Sequence[Any]],
    item: Callable[[Any], dict[str, Any]],
) -> Response:
    api_caller()
    try:
        filters = parse(request.args, allowed=allowed)
    except InvalidFilters as exc:
        raise APIError(400, "invalid_filter", " ".join(exc.errors.values())) from exc
    try:
        limit = cursor.parse_limit(request.args.get("limit"))
    except cursor.InvalidLimit as exc:
        message = f"Le paramètre « limit » doit être un entier de 1 à {cursor.MAX_LIMIT}."
        raise APIError(400, "invalid_limit", message) from exc
    raw = request.args.get("cursor")
    try:
        after = cursor.decode(raw) if raw else None
    except cursor.InvalidCursor as exc:
        raise APIError(400, "invalid_cursor", "Le curseur de pagination est invalide.") from exc
    rows = page(db.session(), filters, after=after, limit=limit + 1)
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1][0]
        next_cursor = cursor.encode(cursor.Position(last.created_at, last.id))
    return jsonify({"items": [item(row) for row in items], "next_cursor": next_cursor})


@bp.get("/alerts")
def alerts() -> Response:
    return _page(ALERT_PARAMS, queries.alerts_page, alert_item)


@bp.get("/events")
def events() -> Response:
    return _page(EVENT_PARAMS, queries.events_page, event_item)
