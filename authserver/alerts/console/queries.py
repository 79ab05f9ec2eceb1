"""Storage for the console: filtered keyset reads of alerts and login events.

Every list is newest first on ``(created_at, id)`` and continues *after* a
position (the last row already shown): no OFFSET, so a deep page costs what the
first one does. Each filter maps onto an index of migration 0003 or 0001:
account → ``(user_id, created_at)``, IP → ``(ip, created_at)``, kind and status →
``(kind|status, created_at)``, outcome (and method) → ``(outcome, created_at, method)``,
period → ``(created_at)``, SIRET → the users' ``siret`` index then the account index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Row, Select, and_, or_, select
from sqlalchemy.orm import Session

from authserver.accounts.validation import username_key
from authserver.alerts.console.cursor import Position
from authserver.alerts.console.filters import Filters
from authserver.models import Device, LoginEvent, SecurityAction, SecurityEvent, User

EXPORT_BATCH = 1000


# Columns with a handful of values (their indexes help only when nothing narrower is asked).
COARSE = ("kind", "status", "outcome", "method")


def _filtered(statement: Select[Any], model: Any, filters: Filters) -> Select[Any]:
    if filters.account is not None:
        account_id = select(User.id).where(User.username_key == username_key(filters.account))
        statement = statement.where(model.user_id == account_id.scalar_subquery())
    if filters.siret is not None:
        statement = statement.where(
            model.user_id.in_(select(User.id).where(User.siret == filters.siret))
        )
    if filters.ip is not None:
        statement = statement.where(model.ip == filters.ip)
    if filters.start is not None:
        statement = statement.where(model.created_at >= filters.start)
    if filters.end is not None:
        statement = statement.where(model.created_at < filters.end)
    # With an account, SIRET or IP, that index is the one to read: SQLite has no statistics
    # to know it, and would as soon scan a whole outcome. ``col || ''`` keeps the coarse
    # column out of index choice (the SQLite idiom; PostgreSQL chooses by its statistics).
    narrow = any(v is not None for v in (filters.account, filters.siret, filters.ip))
    for name in COARSE:
        value = getattr(filters, name)
        if value is not None:
            column = getattr(model, name)
            statement = statement.where((column.concat("") if narrow else column) == value)
    return statement


def _keyset(statement: Select[Any], model: Any, after: Position | None, limit: int) -> Select[Any]:
    if after is not None:
        # The redundant ``<=`` lets every engine range-scan the created_at index.
        statement = statement.where(
            model.created_at <= after.created_at,
            or_(
                model.created_at < after.created_at,
                and_(model.created_at == after.created_at, model.id < after.id),
            ),
        )
    return statement.order_by(model.created_at.desc(), model.id.desc()).limit(limit)


def _alerts(filters: Filters) -> Select[Any]:
    statement = select(SecurityEvent, User.username, User.siret).outerjoin(
        User, User.id == SecurityEvent.user_id
    )
    return _filtered(statement, SecurityEvent, filters)


def _events(filters: Filters) -> Select[Any]:
    statement = select(LoginEvent, User.username, User.siret).outerjoin(
        User, User.id == LoginEvent.user_id
    )
    return _filtered(statement, LoginEvent, filters)


def alerts_page(
    session: Session, filters: Filters, *, after: Position | None, limit: int
) -> Sequence[Row[Any]]:
    """Rows of (SecurityEvent, username, siret)."""
    return session.execute(_keyset(_alerts(filters), SecurityEvent, after, limit)).all()


def events_page(
    session: Session, filters: Filters, *, after: Position | None, limit: int
) -> Sequence[Row[Any]]:
    """Rows of (LoginEvent, username, siret)."""
    return session.execute(_keyset(_events(filters), LoginEvent, after, limit)).all()


def _iterate(session: Session, page: Any, filters: Filters) -> Iterator[Row[Any]]:
    after: Position | None = None
    while True:
        rows = page(session, filters, after=after, limit=EXPORT_BATCH)
        yield from rows
        if len(rows) < EXPORT_BATCH:
            return
        last = rows[-1][0]
        after = Position(last.created_at, last.id)


def iter_alerts(session: Session, filters: Filters) -> Iterator[Row[Any]]:
    return _iterate(session, alerts_page, filters)


def iter_events(session: Session, filters: Filters) -> Iterator[Row[Any]]:
    return _iterate(session, events_page, filters)


def alert_position(session: Session, alert_id: int) -> Position | None:
    row = session.execute(
        select(SecurityEvent.created_at, SecurityEvent.id).where(SecurityEvent.id == alert_id)
    ).first()
    return Position(row[0], row[1]) if row else None


def event_position(session: Session, event_id: int) -> Position | None:
    row = session.execute(
        select(LoginEvent.created_at, LoginEvent.id).where(LoginEvent.id == event_id)
    ).first()
    return Position(row[0], row[1]) if row else None


def recent_events(session: Session, user_id: int, limit: int = 50) -> Sequence[LoginEvent]:
    return session.scalars(
        select(LoginEvent)
        .where(LoginEvent.user_id == user_id)
        .order_by(LoginEvent.created_at.desc(), LoginEvent.id.desc())
        .limit(limit)
    ).all()


def devices(session: Session, user_id: int) -> Sequence[Device]:
    return session.scalars(
        select(Device).where(Device.user_id == user_id).order_by(Device.last_seen_at.desc())
    ).all()


def actions(session: Session, alert_id: int) -> Sequence[SecurityAction]:
    return session.scalars(
        select(SecurityAction)
        .where(SecurityAction.alert_id == alert_id)
        .order_by(SecurityAction.created_at, SecurityAction.id)
    ).all()
