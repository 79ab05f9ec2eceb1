"""The console's charts (issue 15): what the security team watches over weeks, read in a few
grouped queries and drawn server-side as SVG bars (no script, nothing fetched elsewhere), each
with its data table for screen readers and for copying.

Plain functions of a session and a time window; views.py renders them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from authserver.models import LoginEvent, SecurityAction, SecurityEvent

DAYS = 30
TOP_IPS = 10
FAILURES = ("failure", "throttled")


@dataclass(frozen=True)
class Series:
    """One value per day, oldest first."""

    days: list[date]
    values: list[float]

    @property
    def peak(self) -> float:
        return max(self.values, default=0) or 1


@dataclass(frozen=True)
class Stats:
    since: datetime
    failures: Series
    alerts: Series
    passkey_share: Series  # of successful logins, 0–100 %
    by_kind_status: dict[str, dict[str, int]]
    close_median_hours: float | None
    close_p90_hours: float | None
    closed: int
    top_ips: list[tuple[str, int]]


def _day(value: Any) -> date:
    """``date(created_at)``: a string on SQLite, a date on PostgreSQL."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _per_day(rows: list[tuple[Any, int]], days: list[date]) -> list[float]:
    counts = {_day(day): count for day, count in rows}
    return [float(counts.get(day, 0)) for day in days]


def compute(session: Session, now: datetime, days: int = DAYS) -> Stats:
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    calendar = [since.date() + timedelta(days=i) for i in range(days)]
    login_day = func.date(LoginEvent.created_at)
    failures = session.execute(
        select(login_day, func.count())
        .where(LoginEvent.created_at >= since, LoginEvent.outcome.in_(FAILURES))
        .group_by(login_day)
    ).all()
    by_method = session.execute(
        select(login_day, LoginEvent.method, func.count())
        .where(LoginEvent.created_at >= since, LoginEvent.outcome == "success")
        .group_by(login_day, LoginEvent.method)
    ).all()
    totals: dict[date, int] = {}
    passkeys: dict[date, int] = {}
    for day, method, count in by_method:
        key = _day(day)
        totals[key] = totals.get(key, 0) + count
        if method == "passkey":
            passkeys[key] = passkeys.get(key, 0) + count
    share = [100.0 * passkeys.get(d, 0) / totals[d] if totals.get(d) else 0.0 for d in calendar]
    alert_day = func.date(SecurityEvent.created_at)
    alerts = session.execute(
        select(alert_day, func.count()).where(SecurityEvent.created_at >= since).group_by(alert_day)
    ).all()
    table: dict[str, dict[str, int]] = {}
    for kind, status, count in session.execute(
        select(SecurityEvent.kind, SecurityEvent.status, func.count())
        .where(SecurityEvent.created_at >= since)
        .group_by(SecurityEvent.kind, SecurityEvent.status)
    ):
        table.setdefault(kind, {})[status] = count
    closings = session.execute(
        select(SecurityEvent.created_at, func.min(SecurityAction.created_at))
        .join(SecurityAction, SecurityAction.alert_id == SecurityEvent.id)
        .where(SecurityAction.action == "close", SecurityAction.created_at >= since)
        .group_by(SecurityEvent.id, SecurityEvent.created_at)
    ).all()
    hours = sorted(max((closed - opened).total_seconds(), 0) / 3600 for opened, closed in closings)
    top = session.execute(
        select(LoginEvent.ip, func.count().label("n"))
        .where(
            LoginEvent.created_at >= now - timedelta(days=7),
            LoginEvent.outcome.in_(FAILURES),
            LoginEvent.ip != "",
        )
        .group_by(LoginEvent.ip)
        .order_by(func.count().desc(), LoginEvent.ip)
        .limit(TOP_IPS)
    ).all()
    return Stats(
        since=since,
        failures=Series(calendar, _per_day(failures, calendar)),
        alerts=Series(calendar, _per_day(alerts, calendar)),
        passkey_share=Series(calendar, share),
        by_kind_status=table,
        close_median_hours=statistics.median(hours) if hours else None,
        close_p90_hours=hours[min(len(hours) - 1, int(0.9 * len(hours)))] if hours else None,
        closed=len(hours),
        top_ips=[(ip, count) for ip, count in top],
    )
