"""The console's pages (``/security``): alerts, one alert with its actions, login events, CSV.

Thin glue: filters come from :mod:`filters`, rows from :mod:`queries`, effects
from :mod:`actions`. Lists are keyset-paginated with ``?before=<id>`` (the last
row shown); a bad filter re-renders the page with the error beside its field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from sqlalchemy.orm import Session

from authserver import db
from authserver.alerts.console import actions as console_actions
from authserver.alerts.console import export, labels, queries
from authserver.alerts.console import stats as console_stats
from authserver.alerts.console.access import console_page
from authserver.alerts.console.cursor import MAX_ID, Position
from authserver.alerts.console.filters import (
    ALERT_KINDS,
    ALERT_PARAMS,
    EVENT_PARAMS,
    METHOD_LABELS,
    OUTCOME_LABELS,
    SEVERITY_LABELS,
    STATUS_LABELS,
    Filters,
    InvalidFilters,
    parse,
    query_args,
)
from authserver.alerts.devices import describe
from authserver.models import SecurityEvent, User, utcnow
from authserver.plural import plural

bp = Blueprint("security", __name__, url_prefix="/security")

PAGE_SIZE = 50
LABELS = {
    "kinds": ALERT_KINDS,
    "statuses": STATUS_LABELS,
    "outcomes": OUTCOME_LABELS,
    "methods": METHOD_LABELS,
    "severities": SEVERITY_LABELS,
    "actions": console_actions.ACTION_LABELS,
    "reason": labels.reason_label,
    "time": labels.table_time,
    "agent": lambda agent: "{} sur {}".format(*describe(agent or "")),
}


@dataclass
class Listing:
    filters: Filters
    errors: dict[str, str]
    args: dict[str, str]
    rows: Sequence[Any]
    next_before: int | None
    paged: bool

    @property
    def status(self) -> int:
        return 400 if self.errors else 200


def _listing(
    allowed: tuple[str, ...],
    position: Callable[[Session, int], Position | None],
    page: Callable[..., Sequence[Any]],
) -> Listing:
    session = db.session()
    args = query_args(request.args, allowed)
    errors: dict[str, str] = {}
    try:
        filters = parse(request.args, allowed=allowed)
    except InvalidFilters as exc:
        filters, errors = Filters(), exc.errors
    after = None
    raw_before = request.args.get("before", "")
    if raw_before:
        valid = raw_before.isascii() and raw_before.isdigit() and int(raw_before) <= MAX_ID
        after = position(session, int(raw_before)) if valid else None
        if after is None:
            errors["before"] = "Cette page n'existe pas : revenez aux plus récentes."
    if errors:
        return Listing(filters, errors, args, [], None, bool(raw_before))
    rows = page(session, filters, after=after, limit=PAGE_SIZE + 1)
    next_before = rows[PAGE_SIZE - 1][0].id if len(rows) > PAGE_SIZE else None
    return Listing(filters, errors, args, rows[:PAGE_SIZE], next_before, bool(raw_before))


def _page(template: str, listing: Listing, **context: Any) -> tuple[str, int]:
    body = render_template(template, listing=listing, labels=LABELS, **context)
    return body, listing.status


@bp.get("")
@console_page
def alerts() -> tuple[str, int]:
    listing = _listing(ALERT_PARAMS, queries.alert_position, queries.alerts_page)
    return _page("security/alerts.html", listing)


@bp.get("/stats")
@console_page
def stats() -> str:
    return render_template(
        "security/stats.html",
        stats=console_stats.compute(db.session(), utcnow()),
        labels=LABELS,
    )


@bp.get("/events")
@console_page
def login_events() -> tuple[str, int]:
    listing = _listing(EVENT_PARAMS, queries.event_position, queries.events_page)
    return _page("security/events.html", listing)


def _alert_or_404(alert_id: int) -> SecurityEvent:
    alert = db.session().get(SecurityEvent, alert_id) if alert_id <= MAX_ID else None
    if alert is None:
        abort(404)
    return alert


def _alert_page(
    alert: SecurityEvent, *, status: int = 200, failed: str | None = None, error: str = ""
) -> tuple[str, int]:
    session = db.session()
    account = session.get(User, alert.user_id) if alert.user_id is not None else None
    devices = queries.devices(session, account.id) if account else []
    body = render_template(
        "security/alert.html",
        alert=alert,
        account=account,
        details=labels.details(alert.details, devices=devices, methods=METHOD_LABELS),
        device_names={device.id: labels.device_label(device) for device in devices},
        events=queries.recent_events(session, account.id) if account else [],
        devices=devices,
        trail=queries.actions(session, alert.id),
        available=_available_actions(alert, account),
        labels=LABELS,
        failed=failed,
        error=error,
        typed=request.form.get("note", "") if failed else "",
    )
    return body, status


def _available_actions(alert: SecurityEvent, account: User | None) -> list[str]:
    shown = [
        action
        for action, (_, sources) in console_actions.TRANSITIONS.items()
        if alert.status in sources
    ]
    if account is not None:
        if account.locked_at is None and account.id != current_user.id:
            shown.append("lock_account")
        shown.append("revoke_sessions")
    shown.append("note")
    order = list(console_actions.ACTION_LABELS)
    return sorted(shown, key=order.index)


@bp.get("/alerts/<int:alert_id>")
@console_page
def alert_detail(alert_id: int) -> tuple[str, int]:
    return _alert_page(_alert_or_404(alert_id))


@bp.post("/alerts/<int:alert_id>/actions/<action>")
@console_page
def alert_action(alert_id: int, action: str) -> Any:
    alert = _alert_or_404(alert_id)
    if action not in console_actions.ACTION_LABELS:
        abort(404)
    session = db.session()
    actor = session.get(User, current_user.id)
    assert actor is not None
    try:
        outcome = console_actions.perform(
            session, alert=alert, actor=actor, action=action, note=request.form.get("note", "")
        )
    except console_actions.ActionRefused as exc:
        session.rollback()
        return _alert_page(_alert_or_404(alert_id), status=400, failed=action, error=str(exc))
    session.commit()
    message = console_actions.DONE_LABELS[action]
    if action in ("lock_account", "revoke_sessions"):
        message += f" ({plural(outcome.sessions_revoked, 'session fermée', 'sessions fermées')})"
    flash(message, "success")
    return redirect(url_for("security.alert_detail", alert_id=alert.id), code=303)


def _csv(
    columns: list[export.Column], rows: Callable[[Session], Iterator[Any]], stem: str
) -> Response:
    """Stream the CSV. The rows are read with the session current *while streaming*: the
    view's own session is closed when the view returns, and one reopened from it would
    never be given back to the pool."""
    filename = f"{stem}-{utcnow().strftime('%Y%m%d-%H%M%S')}.csv"

    def generate() -> Iterator[str]:
        yield from export.lines(columns, rows(db.session()))

    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def _export_filters(allowed: tuple[str, ...]) -> Filters | tuple[str, int]:
    try:
        return parse(request.args, allowed=allowed)
    except InvalidFilters as exc:
        message = " ".join(exc.errors.values())
        return render_template("errors/error.html", status=400, message=message), 400


@bp.get("/export.csv")
@console_page
def alerts_csv() -> Any:
    filters = _export_filters(ALERT_PARAMS)
    if not isinstance(filters, Filters):
        return filters
    return _csv(
        export.ALERT_COLUMNS,
        lambda session: queries.iter_alerts(session, filters),
        "alertes-securite",
    )


@bp.get("/events/export.csv")
@console_page
def events_csv() -> Any:
    filters = _export_filters(EVENT_PARAMS)
    if not isinstance(filters, Filters):
        return filters
    return _csv(
        export.EVENT_COLUMNS,
        lambda session: queries.iter_events(session, filters),
        "evenements-connexion",
    )
