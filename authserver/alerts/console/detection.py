"""Burst detection over login events, off the login path.

``detect(session, now)`` reads the login events added since its last run (a
high-water mark on their id, kept in ``detector_state``), finds the accounts,
addresses and browsers they involve, and looks at each one's recent history:

- ``failure_burst_account``: ≥ 10 failed logins on one account within 15 minutes;
- ``failure_burst_ip``: ≥ 20 failed logins from one IP address within 15 minutes;
- ``many_accounts_ip``: ≥ 5 accounts logging in successfully from one IP within 1 hour;
- ``many_accounts_device``: ≥ 5 accounts logging in successfully from one browser (device
  cookie) within 1 hour.

Refused attempts (``failure`` and ``throttled``) both count as failures. One subject
gets at most one alert while an alert of the same kind is open, never two in one
window, and never two for the same events.

Ids are not handed out in commit order on PostgreSQL (a sequence value is taken at
INSERT, the row shows at COMMIT): a slower login transaction can commit an id below
one a run already read. So the mark never moves past a missing id while the events
after it are younger than ``SETTLE`` (older, it was rolled back): the next run reads
from the gap again, late event included. Reading an event twice raises nothing new:
an alert's events are skipped for its subject (``_covered``), and an open or recent
alert holds back another (``_already_alerted``).

A run reads everything first, holding no lock, then moves the mark with a compare-and-set
from where it read it and writes its alerts, so several server processes may run it: of
runs that read the same events, only the first to move the mark writes anything. (A run
used to begin by writing the state row: on SQLite, the server's one write lock, held while
it read up to 100,000 events, and every login waited.) The caller commits.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from authserver.alerts import events
from authserver.models import DetectorState, Device, LoginEvent, SecurityEvent, User, utcnow

STATE_NAME = "login_bursts"
FAILED = ("failure", "throttled")
BATCH = 5000
MAX_BATCHES = 20  # per run; the next run goes on from the mark
IN_CHUNK = 500  # subjects per query
# A missing id followed by events younger than this may still commit (longer than any
# login transaction takes); older, it never will.
SETTLE = timedelta(seconds=60)


@dataclass(frozen=True)
class Rule:
    kind: str
    threshold: int
    window: timedelta
    severity: str


RULES = {
    rule.kind: rule
    for rule in (
        Rule("failure_burst_account", 10, timedelta(minutes=15), "medium"),
        Rule("failure_burst_ip", 20, timedelta(minutes=15), "high"),
        Rule("many_accounts_ip", 5, timedelta(hours=1), "medium"),
        Rule("many_accounts_device", 5, timedelta(hours=1), "medium"),
    )
}
LOOKBACK = max(rule.window for rule in RULES.values())


# --------------------------------------------------------------------------- pure part


@dataclass(frozen=True)
class Burst:
    count: int
    first_at: datetime
    last_at: datetime
    keys: frozenset[Hashable] = field(default_factory=frozenset)


def densest(
    history: Sequence[tuple[datetime, int, Hashable]],
    *,
    mark: int,
    window: timedelta,
    distinct: bool,
) -> Burst | None:
    """The fullest window ``(t - window, t]`` ending at an event newer than ``mark``.

    ``history`` holds ``(created_at, id, key)`` sorted by time; the size of a window
    is its number of events, or of distinct keys when ``distinct``.
    """
    best: Burst | None = None
    keys: Counter[Hashable] = Counter()
    start = 0
    for end, (moment, row_id, key) in enumerate(history):
        keys[key] += 1
        while history[start][0] <= moment - window:
            keys[history[start][2]] -= 1
            if not keys[history[start][2]]:
                del keys[history[start][2]]
            start += 1
        if row_id <= mark:
            continue
        size = len(keys) if distinct else end - start + 1
        if best is None or size > best.count:
            best = Burst(size, history[start][0], moment, frozenset(keys))
    return best


# --------------------------------------------------------------------------- storage part


@dataclass
class Finding:
    rule: Rule
    subject: str
    burst: Burst
    user_id: int | None = None
    ip: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Mark:
    """The detector's mark as a run read it, before reading anything else."""

    last_id: int | None
    stored: bool  # the state row exists (the migration writes it; a test may not)


def _read_mark(session: Session) -> _Mark:
    row = session.execute(
        select(DetectorState.last_id).where(DetectorState.name == STATE_NAME)
    ).first()
    return _Mark(row[0] if row is not None else None, row is not None)


def _move_mark(session: Session, read: _Mark, settled: int, now: datetime) -> bool:
    """Move the mark from where this run read it to ``settled``: the run's first write, so
    on SQLite its first moment under the write lock. False: another run moved it meanwhile
    (it read the same events and raised their alerts), nothing is written."""
    if not read.stored:
        session.add(DetectorState(name=STATE_NAME, last_id=settled, updated_at=now))
        session.flush()  # a concurrent first run fails here on the name: the next run goes on
        return True
    unchanged = (
        DetectorState.last_id.is_(None)
        if read.last_id is None
        else DetectorState.last_id == read.last_id
    )
    moved = session.execute(
        update(DetectorState)
        .where(DetectorState.name == STATE_NAME, unchanged)
        .values(last_id=settled, updated_at=now)
    )
    return bool(moved.rowcount)


def _initial_mark(session: Session, now: datetime) -> int:
    """First run: only the last hour matters (older bursts are history, not alerts)."""
    first = session.scalar(
        select(func.min(LoginEvent.id)).where(LoginEvent.created_at >= now - LOOKBACK)
    )
    if first is not None:
        return first - 1
    return session.scalar(select(func.max(LoginEvent.id))) or 0


def _chunks(values: set[Any]) -> Iterator[list[Any]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


def _histories(
    session: Session, column: Any, subjects: set[Any], *conditions: Any, since: datetime
) -> dict[Any, list[tuple[Any, ...]]]:
    """Each subject's events after ``since``, in time order: one query per chunk of subjects."""
    grouped: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    key = 2 if column is LoginEvent.user_id else 3
    for chunk in _chunks(subjects):
        statement = (
            select(LoginEvent.created_at, LoginEvent.id, LoginEvent.user_id, LoginEvent.ip)
            .where(column.in_(chunk), LoginEvent.created_at > since, *conditions)
            .order_by(LoginEvent.created_at, LoginEvent.id)
        )
        for row in session.execute(statement):
            grouped[row[key]].append(tuple(row))
    return grouped


def _usernames(session: Session, user_ids: set[Any]) -> list[str]:
    ids = sorted(i for i in user_ids if isinstance(i, int))[:20]
    if not ids:
        return []
    return sorted(session.scalars(select(User.username).where(User.id.in_(ids))))


def _covered(session: Session, rule: Rule, since: datetime) -> dict[str, datetime]:
    """Each subject's last event already in an alert of this rule (its ``last_at``).

    Events read again (behind a gap, see ``SETTLE``) are cut at that point: an old burst
    read again neither raises a second alert nor hides a newer burst of the subject.
    (An alert is raised after its last event: reading alerts from ``since`` is enough.)
    """
    covered: dict[str, datetime] = {}
    statement = select(SecurityEvent.details).where(
        SecurityEvent.kind == rule.kind, SecurityEvent.created_at >= since
    )
    for details in session.scalars(statement):
        subject, last_at = (details or {}).get("subject"), (details or {}).get("last_at")
        if isinstance(subject, str) and isinstance(last_at, str):
            moment = datetime.fromisoformat(last_at)
            if subject not in covered or moment > covered[subject]:
                covered[subject] = moment
    return covered


def _after(rows: list[tuple[Any, ...]], moment: datetime | None) -> list[tuple[Any, ...]]:
    return rows if moment is None else [row for row in rows if row[0] > moment]


def _failure_bursts_account(
    session: Session, user_ids: set[int], mark: int, since: datetime
) -> list[Finding]:
    rule = RULES["failure_burst_account"]
    histories = _histories(
        session,
        LoginEvent.user_id,
        user_ids,
        LoginEvent.outcome.in_(FAILED),
        since=since - rule.window,
    )
    covered = _covered(session, rule, since - rule.window)
    found = []
    for user_id, all_rows in sorted(histories.items()):
        rows = _after(all_rows, covered.get(f"account:{user_id}"))
        if len(rows) < rule.threshold:
            continue
        burst = densest(
            [(r[0], r[1], r[1]) for r in rows], mark=mark, window=rule.window, distinct=False
        )
        if burst is None or burst.count < rule.threshold:
            continue
        ips = Counter(r[3] for r in rows if burst.first_at <= r[0] <= burst.last_at)
        found.append(
            Finding(
                rule,
                f"account:{user_id}",
                burst,
                user_id=user_id,
                ip=ips.most_common(1)[0][0] if ips else "",
                details={"failures": burst.count, "ips": [ip for ip, _ in ips.most_common(5)]},
            )
        )
    return found


def _ip_bursts(
    session: Session, ips: set[str], mark: int, since: datetime, *, kind: str
) -> list[Finding]:
    rule = RULES[kind]
    failures = kind == "failure_burst_ip"
    outcome = LoginEvent.outcome.in_(FAILED) if failures else LoginEvent.outcome == "success"
    histories = _histories(session, LoginEvent.ip, ips, outcome, since=since - rule.window)
    covered = _covered(session, rule, since - rule.window)
    found = []
    for ip, all_rows in sorted(histories.items()):
        rows = _after(all_rows, covered.get(f"ip:{ip}"))
        if len(rows) < rule.threshold:
            continue
        if failures:
            history = [(r[0], r[1], r[1]) for r in rows]
        else:
            history = [(r[0], r[1], r[2]) for r in rows if r[2] is not None]
        burst = densest(history, mark=mark, window=rule.window, distinct=not failures)
        if burst is None or burst.count < rule.threshold:
            continue
        in_burst = {r[2] for r in rows if burst.first_at <= r[0] <= burst.last_at}
        details: dict[str, Any] = {"usernames": _usernames(session, in_burst)}
        details["failures" if failures else "accounts"] = burst.count
        found.append(Finding(rule, f"ip:{ip}", burst, ip=ip, details=details))
    return found


def _device_bursts(session: Session, device_ids: set[int], now: datetime) -> list[Finding]:
    """Accounts whose device record for one browser was last used within the window.

    Each account has one device row per browser, its ``last_seen_at`` moved at every
    successful login: counting those rows is counting the accounts, without reading
    the login events again.
    """
    rule = RULES["many_accounts_device"]
    hashes: set[bytes] = set()
    for chunk in _chunks(device_ids):
        hashes.update(session.scalars(select(Device.cookie_hash).where(Device.id.in_(chunk))))
    recent: dict[bytes, list[tuple[Any, ...]]] = defaultdict(list)
    for chunk in _chunks(hashes):
        statement = (
            select(Device.cookie_hash, Device.user_id, Device.last_seen_at, Device.last_ip)
            .where(Device.cookie_hash.in_(chunk), Device.last_seen_at > now - rule.window)
            .order_by(Device.last_seen_at)
        )
        for row in session.execute(statement):
            recent[row[0]].append(tuple(row))
    found = []
    for cookie_hash, rows in sorted(recent.items()):
        if len(rows) < rule.threshold:
            continue
        burst = Burst(len(rows), rows[0][2], rows[-1][2], frozenset(r[1] for r in rows))
        found.append(
            Finding(
                rule,
                f"device:{cookie_hash.hex()[:16]}",
                burst,
                ip=rows[-1][3],
                details={
                    "device": cookie_hash.hex()[:16],
                    "accounts": burst.count,
                    "usernames": _usernames(session, set(burst.keys)),
                },
            )
        )
    return found


def _already_alerted(session: Session, finding: Finding, now: datetime) -> bool:
    """An alert of this kind and subject is still open, or was raised within the window."""
    statement = select(SecurityEvent.details).where(
        SecurityEvent.kind == finding.rule.kind,
        or_(SecurityEvent.status == "open", SecurityEvent.created_at > now - finding.rule.window),
    )
    if finding.user_id is not None:
        statement = statement.where(SecurityEvent.user_id == finding.user_id)
    elif finding.ip:
        statement = statement.where(SecurityEvent.ip == finding.ip)
    return any(
        (details or {}).get("subject") == finding.subject for details in session.scalars(statement)
    )


def _alert(finding: Finding, now: datetime) -> SecurityEvent:
    rule, burst = finding.rule, finding.burst
    return SecurityEvent(
        kind=rule.kind,
        severity=rule.severity,
        user_id=finding.user_id,
        ip=finding.ip,
        created_at=now,
        details={
            "subject": finding.subject,
            **finding.details,
            "first_at": burst.first_at.isoformat(),
            "last_at": burst.last_at.isoformat(),
            "window_minutes": int(rule.window.total_seconds() // 60),
            "threshold": rule.threshold,
        },
    )


def _announce(finding: Finding, account: str | None) -> None:
    rule, burst = finding.rule, finding.burst
    events.emit(
        "burst_alert",
        kind=rule.kind,
        subject=finding.subject,
        account=account,
        ip=finding.ip or None,
        user_agent=None,  # many attempts: their user agents are in the login lines
        device=finding.details.get("device"),
        outcome="alert_raised",
        count=burst.count,
        severity=rule.severity,
    )


def _new(session: Session, findings: list[Finding], now: datetime) -> list[Finding]:
    """The findings that raise an alert: none open or recent for their subject (read before
    the write: the run that moves the mark started after the last one's alerts committed),
    and once per subject when several batches of the run find it."""
    fresh: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for finding in findings:
        key = (finding.rule.kind, finding.subject)
        if key in seen or _already_alerted(session, finding, now):
            continue
        seen.add(key)
        fresh.append(finding)
    return fresh


def _accounts(session: Session, findings: list[Finding]) -> dict[int, str]:
    ids = {f.user_id for f in findings if f.user_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {user_id: username for user_id, username in rows}


def detect(session: Session, now: datetime | None = None) -> list[SecurityEvent]:
    """Scan the login events added since the last run; return the alerts raised.

    Everything is read first, nothing locked: on SQLite a run that began with a write held
    the database's one write lock while it read up to 100,000 events, and every login of
    the server waited for it (1.7 s for 40,000 events in tests/alerts/test_detection.py).
    Then, in one short write, the mark moves from where this run read it (a run that finds
    it moved raises nothing: the other run read the same events) and the alerts are
    written. Concurrent runs may read the same events; only one of them writes."""
    now = now or utcnow()
    read = _read_mark(session)
    mark = read.last_id if read.last_id is not None else _initial_mark(session, now)
    settled, blocked = mark, False
    findings: list[Finding] = []
    for _ in range(MAX_BATCHES):
        batch = session.execute(
            select(
                LoginEvent.id,
                LoginEvent.created_at,
                LoginEvent.user_id,
                LoginEvent.ip,
                LoginEvent.outcome,
                LoginEvent.device_id,
            )
            .where(LoginEvent.id > mark)
            .order_by(LoginEvent.id)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        since = min(row.created_at for row in batch)
        failed = [row for row in batch if row.outcome in FAILED]
        succeeded = [row for row in batch if row.outcome == "success"]
        findings += [
            *_failure_bursts_account(
                session, {r.user_id for r in failed if r.user_id is not None}, mark, since
            ),
            *_ip_bursts(
                session, {r.ip for r in failed if r.ip}, mark, since, kind="failure_burst_ip"
            ),
            *_ip_bursts(
                session, {r.ip for r in succeeded if r.ip}, mark, since, kind="many_accounts_ip"
            ),
            *_device_bursts(session, {r.device_id for r in succeeded if r.device_id}, now),
        ]
        # The stored mark stops below a missing id that may still commit; this run reads on.
        previous = mark
        for row in batch:
            gap = row.id != previous + 1
            blocked = blocked or (gap and row.created_at > now - SETTLE)
            if not blocked:
                settled = row.id
            previous = row.id
        mark = batch[-1].id
        if len(batch) < BATCH:
            break
    fresh = _new(session, findings, now)
    accounts = _accounts(session, fresh)
    if not _move_mark(session, read, settled, now):
        return []
    raised = [_alert(finding, now) for finding in fresh]
    session.add_all(raised)
    session.flush()
    for finding in fresh:
        _announce(finding, accounts.get(finding.user_id) if finding.user_id is not None else None)
    return raised
