"""Burst detection: the four rules, their windows, deduplication, the mark, CLI and thread."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, update

from authserver.alerts.console.detection import detect
from authserver.alerts.console.worker import DetectorWorker, interval_from
from authserver.cli import cli
from authserver.config import ConfigError
from authserver.db import get_database
from authserver.models import DetectorState, Device, SecurityEvent, utcnow
from tests.alerts.console_helpers import add_events, add_user
from tests.conftest import Actions

NOW = utcnow().replace(microsecond=0)
WRONG = "ce n'est pas le bon mot de passe"


def minutes(m: float, base: datetime = NOW) -> datetime:
    return base + timedelta(minutes=m)


def run(app: Flask, now: datetime = NOW) -> list[SecurityEvent]:
    with get_database(app).session_scope() as session:
        raised = detect(session, now)
        for alert in raised:
            session.refresh(alert)
        return raised


def alerts(app: Flask, kind: str | None = None) -> list[SecurityEvent]:
    with get_database(app).session_scope() as session:
        statement = select(SecurityEvent).order_by(SecurityEvent.id)
        if kind:
            statement = statement.where(SecurityEvent.kind == kind)
        return list(session.scalars(statement))


def failures(user_id: int | None, at: list[datetime], ip: str = "203.0.113.5", **extra):
    return [
        {
            "user_id": user_id,
            "ip": ip,
            "outcome": "failure",
            "reason": "bad_credentials",
            "created_at": moment,
            **extra,
        }
        for moment in at
    ]


def on_accounts(raised: list[SecurityEvent]) -> list[SecurityEvent]:
    return [alert for alert in raised if alert.kind == "failure_burst_account"]


def set_status(app: Flask, alert_id: int, status: str) -> None:
    with get_database(app).session_scope() as session:
        session.execute(
            update(SecurityEvent).where(SecurityEvent.id == alert_id).values(status=status)
        )


# --------------------------------------------------------------------------- failures on an account


def test_ten_failures_on_one_account_within_15_minutes(app):
    victim = add_user(app, "victime.b")
    add_events(app, failures(victim, [minutes(-10 + m) for m in range(9)]))
    assert run(app) == []
    add_events(app, failures(victim, [minutes(-0.5)], ip="198.51.100.77"))
    (alert,) = run(app)
    assert alert.kind == "failure_burst_account"
    assert alert.user_id == victim and alert.severity == "medium" and alert.status == "open"
    assert alert.ip == "203.0.113.5"
    assert alert.details["failures"] == 10
    assert alert.details["subject"] == f"account:{victim}"
    assert set(alert.details["ips"]) == {"203.0.113.5", "198.51.100.77"}
    assert alert.details["threshold"] == 10 and alert.details["window_minutes"] == 15
    # Processed once: nothing new, nothing raised.
    assert run(app) == []


@pytest.mark.parametrize(("spacing_s", "expected"), [(99, 1), (100, 0), (120, 0)])
def test_the_window_is_15_minutes(app, spacing_s, expected):
    victim = add_user(app, "victime.b")
    add_events(app, failures(victim, [minutes(-30 + n * spacing_s / 60) for n in range(10)]))
    assert len(run(app)) == expected


def test_throttled_attempts_count_as_failures(app):
    victim = add_user(app, "victime.b")
    rows = failures(victim, [minutes(-5 + m / 10) for m in range(5)])
    rows += [
        {
            "user_id": victim,
            "outcome": "throttled",
            "reason": "throttled",
            "created_at": minutes(-4 + m / 10),
        }
        for m in range(5)
    ]
    add_events(app, rows)
    assert [a.kind for a in run(app)] == ["failure_burst_account"]


def test_one_open_alert_per_account_then_a_new_one_after_the_window(app):
    """(The same address also makes IP bursts here: only the account's alerts are looked at.)"""
    victim = add_user(app, "victime.b")
    add_events(app, failures(victim, [minutes(-10 + m / 2) for m in range(10)]))
    (first,) = on_accounts(run(app))
    # The attack goes on: the open alert covers it.
    add_events(app, failures(victim, [minutes(m / 10) for m in range(15)]))
    assert on_accounts(run(app, minutes(2))) == []
    # Closed, but still within the window of the last alert: no second alert either.
    set_status(app, first.id, "closed")
    add_events(app, failures(victim, [minutes(5 + m / 10) for m in range(15)]))
    assert on_accounts(run(app, minutes(7))) == []
    # A new burst after the window, the first alert closed: a new alert.
    add_events(app, failures(victim, [minutes(40 + m / 10) for m in range(10)]))
    (second,) = on_accounts(run(app, minutes(41)))
    assert second.id != first.id and second.kind == "failure_burst_account"
    # With nothing new, later runs raise nothing (the mark moved past the events).
    set_status(app, second.id, "closed")
    assert on_accounts(run(app, minutes(120))) == []


def test_first_run_ignores_events_older_than_an_hour(app):
    victim = add_user(app, "victime.b")
    add_events(app, failures(victim, [minutes(-120 + m / 10) for m in range(30)]))
    assert run(app) == []
    with get_database(app).session_scope() as session:
        state = session.get(DetectorState, "login_bursts")
        assert state is not None and state.last_id is not None


# --------------------------------------------------------------------------- failures from an IP


@pytest.mark.parametrize(("count", "raised"), [(19, 0), (20, 1)])
def test_twenty_failures_from_one_ip(app, count, raised):
    rows = [
        {
            "username_attempt": f"compte{n}",
            "ip": "198.51.100.9",
            "outcome": "failure",
            "reason": "bad_credentials",
            "created_at": minutes(-10 + n / 5),
        }
        for n in range(count)
    ]
    add_events(app, rows)
    found = run(app)
    assert len(found) == raised
    if raised:
        (alert,) = found
        assert alert.kind == "failure_burst_ip"
        assert alert.ip == "198.51.100.9" and alert.user_id is None
        assert alert.severity == "high"
        assert alert.details["failures"] == 20
        assert alert.details["subject"] == "ip:198.51.100.9"


# --------------------------------------------------------------------------- many accounts


def test_five_accounts_logging_in_from_one_ip_within_an_hour(app):
    users = [add_user(app, f"compte.{n}") for n in range(5)]
    add_events(
        app,
        [
            {"user_id": u, "ip": "192.0.2.50", "created_at": minutes(-50 + 10 * n)}
            for n, u in enumerate(users[:4])
        ],
    )
    assert run(app) == []
    add_events(app, [{"user_id": users[4], "ip": "192.0.2.50", "created_at": minutes(-1)}])
    (alert,) = run(app)
    assert alert.kind == "many_accounts_ip" and alert.ip == "192.0.2.50"
    assert alert.details["accounts"] == 5
    assert alert.details["usernames"] == [f"compte.{n}" for n in range(5)]


def test_one_account_many_times_is_not_many_accounts(app):
    user = add_user(app, "compte.seul")
    add_events(
        app, [{"user_id": user, "ip": "192.0.2.51", "created_at": minutes(-m)} for m in range(20)]
    )
    assert run(app) == []


def test_five_accounts_spread_over_more_than_an_hour(app):
    users = [add_user(app, f"compte.{n}") for n in range(5)]
    add_events(
        app,
        [
            {"user_id": u, "ip": "192.0.2.52", "created_at": minutes(-59 + 15 * n)}
            for n, u in enumerate(users)
        ],
    )
    assert run(app, minutes(2)) == []


def _devices(app: Flask, users: list[int], cookie: bytes, seen: datetime) -> list[int]:
    with get_database(app).session_scope() as session:
        rows = [
            Device(user_id=u, cookie_hash=cookie, first_seen_at=seen, last_seen_at=seen)
            for u in users
        ]
        session.add_all(rows)
        session.flush()
        return [d.id for d in rows]


@pytest.mark.parametrize(("accounts", "raised"), [(4, 0), (5, 1)])
def test_accounts_sharing_one_browser(app, accounts, raised):
    users = [add_user(app, f"compte.{n}") for n in range(accounts)]
    cookie = hashlib.sha256(b"one browser").digest()
    device_ids = _devices(app, users, cookie, minutes(-5))
    _devices(app, [users[0]], hashlib.sha256(b"another browser").digest(), minutes(-5))
    add_events(
        app,
        [
            {"user_id": u, "device_id": d, "ip": f"192.0.2.{60 + n}", "created_at": minutes(-5)}
            for n, (u, d) in enumerate(zip(users, device_ids, strict=True))
        ],
    )
    found = run(app)
    assert len(found) == raised
    if raised:
        (alert,) = found
        assert alert.kind == "many_accounts_device"
        assert alert.details["device"] == cookie.hex()[:16]
        assert alert.details["accounts"] == 5
        assert alert.user_id is None


def test_real_logins_of_five_accounts_from_one_browser(app, smtp):
    """Through the login form: one browser (one device cookie), one IP, five accounts."""
    for n in range(5):
        add_user(app, f"guichet.{n}")
    browser = Actions(app.test_client(), smtp)
    for n in range(5):
        # Logging in as the next account replaces the session; the device cookie stays.
        assert browser.login(f"guichet.{n}").status_code == 302
    kinds = sorted(a.kind for a in run(app, utcnow()))
    assert kinds == ["many_accounts_device", "many_accounts_ip"]


def test_real_failed_logins_raise_a_burst(app, smtp):
    add_user(app, "victime.b")
    attacker = Actions(app.test_client(), smtp)
    for _ in range(10):
        assert attacker.login("victime.b", password=WRONG).status_code in (200, 400, 401, 429)
    (alert,) = run(app, utcnow())
    assert alert.kind == "failure_burst_account"
    assert alert.details["failures"] == 10


# --------------------------------------------------------------------------- runs


def test_concurrent_runs_raise_one_alert(backend_app):
    app = backend_app
    victim = add_user(app, "victime.b")
    add_events(app, failures(victim, [minutes(-5 + m / 10) for m in range(12)]))
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(len(run(app)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(results) == [0, 0, 1]
    assert len(alerts(app, "failure_burst_account")) == 1


def test_cli_detect(app):
    victim = add_user(app, "victime.b")
    add_events(app, failures(victim, [utcnow() - timedelta(seconds=s) for s in range(10)]))
    env = {
        "AUTHSERVER_DATABASE_URL": get_database(app).url,
        "AUTHSERVER_INSTANCE_PATH": app.instance_path,
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }
    result = CliRunner().invoke(cli, ["security", "detect"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 alerte levée" in result.output
    assert f"failure_burst_account account:{victim}" in result.output


def test_the_thread_is_off_in_tests_and_runs_when_started(app):
    assert "authserver.detector" not in app.extensions
    victim = add_user(app, "victime.b")
    add_events(app, failures(victim, [utcnow() - timedelta(seconds=s) for s in range(10)]))
    worker = DetectorWorker(get_database(app), interval=0.1)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not alerts(app) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert [a.kind for a in alerts(app)] == ["failure_burst_account"]


@pytest.mark.parametrize(
    ("value", "expected"), [("", 30.0), ("5", 5.0), ("0", 0.0), (" 2.5 ", 2.5)]
)
def test_interval_setting(value, expected):
    assert interval_from({"AUTHSERVER_DETECTOR_INTERVAL": value}) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "1e9"])
def test_a_bad_interval_names_the_variable(value):
    with pytest.raises(ConfigError) as caught:
        interval_from({"AUTHSERVER_DETECTOR_INTERVAL": value})
    assert caught.value.variable == "AUTHSERVER_DETECTOR_INTERVAL"


# --------------------------------------------------------------------------- late commits


def _state_mark(app: Flask) -> int | None:
    with get_database(app).session_scope() as session:
        state = session.get(DetectorState, "login_bursts")
        return state.last_id if state else None


def test_an_event_committed_below_the_mark_is_still_read(app):
    """On PostgreSQL an id is taken at INSERT: a slow transaction commits it after higher ids
    were read. Simulated with explicit ids: id 2 shows up after 3..11 were read."""
    victim = add_user(app, "victime.b")
    add_events(app, [{"id": 1, "user_id": victim, "created_at": minutes(-5)}])
    assert run(app) == []
    assert _state_mark(app) == 1
    add_events(
        app,
        [{"id": 2 + n, **row} for n, row in enumerate(failures(victim, [minutes(-0.5)] * 9), 1)],
    )
    assert on_accounts(run(app)) == []  # 9 failures: below the threshold
    assert _state_mark(app) == 1  # not past the missing id 2, its neighbours are young
    add_events(app, [{"id": 2, **failures(victim, [minutes(-0.6)])[0]}])  # the late commit
    (alert,) = on_accounts(run(app))
    assert alert.details["failures"] == 10
    assert _state_mark(app) == 11
    assert on_accounts(run(app)) == []


def test_a_gap_that_never_fills_stops_holding_the_mark(app):
    victim = add_user(app, "victime.b")
    add_events(app, [{"id": 1, "user_id": victim, "created_at": minutes(-5)}])
    run(app)
    add_events(
        app, [{"id": 3 + n, "user_id": victim, "created_at": minutes(-0.5)} for n in range(3)]
    )
    run(app)
    assert _state_mark(app) == 1
    run(app, minutes(2))  # id 2 was rolled back: older than SETTLE, it will never commit
    assert _state_mark(app) == 5


def test_events_read_again_raise_nothing_new(app):
    """Re-read past the gap after the alert was closed and its window passed: same events,
    no second alert, and a newer burst of the same account is still seen."""
    victim = add_user(app, "victime.b")
    add_events(app, [{"id": 1, "user_id": victim, "created_at": minutes(-5)}])
    run(app)
    rows = failures(victim, [minutes(-0.9 + m / 20) for m in range(10)])
    add_events(app, [{"id": 3 + n, **row} for n, row in enumerate(rows)])
    (first,) = on_accounts(run(app))
    assert _state_mark(app) == 1
    set_status(app, first.id, "closed")
    assert on_accounts(run(app, minutes(20))) == []  # read again: covered by the first alert
    add_events(app, failures(victim, [minutes(30 + m / 10) for m in range(10)]))
    (second,) = on_accounts(run(app, minutes(31)))
    assert second.id != first.id


@pytest.mark.pg
def test_a_transaction_committing_late_on_postgresql(postgres, pg_template, make_app):
    from sqlalchemy import insert

    from authserver.models import LoginEvent
    from tests.conftest import fresh_pg_url

    app = make_app(fresh_pg_url(postgres, pg_template))
    victim = add_user(app, "victime.b")
    add_events(app, [{"user_id": victim, "created_at": minutes(-5)}])
    run(app)
    database = get_database(app)
    slow = database.factory()
    try:
        # The slow login takes its id first and commits last.
        slow.execute(
            insert(LoginEvent),
            {
                "user_id": victim,
                "ip": "203.0.113.5",
                "method": "password",
                "outcome": "failure",
                "reason": "bad_credentials",
                "created_at": minutes(-0.2),
            },
        )
        add_events(app, failures(victim, [minutes(-0.1)] * 9))
        assert on_accounts(run(app)) == []
        slow.commit()
    finally:
        slow.close()
    (alert,) = on_accounts(run(app))
    assert alert.details["failures"] == 10


def test_a_run_over_many_events_leaves_the_write_lock_to_the_logins(app):
    """On SQLite one write lock serves every login. A run used to take it first (to be the
    only run) and read up to 100,000 events under it: every login of the server waited for
    the whole run, up to 1.6 s under load. Now the run reads first and takes the lock only
    to move its mark and write its alerts."""
    import sqlite3

    users = [add_user(app, f"employeur.{i}") for i in range(20)]
    rows = [
        {
            "user_id": users[i % 20],
            "ip": f"198.51.100.{i % 20}",  # one address per account: a few alerts to write
            "outcome": "success" if i % 3 else "failure",
            "created_at": NOW - timedelta(seconds=i % 3000),
        }
        for i in range(40_000)
    ]
    add_events(app, rows)
    path = get_database(app).engine.url.database
    done = threading.Event()
    took: list[float] = []

    def detection() -> None:
        started = time.monotonic()
        try:
            run(app)
        finally:
            took.append(time.monotonic() - started)
            done.set()

    login = sqlite3.connect(path, timeout=0, isolation_level=None)
    thread = threading.Thread(target=detection)
    thread.start()
    longest = 0.0
    blocked_since: float | None = None
    while not done.is_set():
        try:
            login.execute("BEGIN IMMEDIATE")  # a login's write turn
            login.execute("COMMIT")
            blocked_since = None
        except sqlite3.OperationalError:
            now = time.monotonic()
            blocked_since = blocked_since or now
            longest = max(longest, now - blocked_since)
        time.sleep(0.001)
    thread.join()
    login.close()
    assert took[0] > 0.2, "the run read too little to tell"
    assert longest < 0.1, f"logins waited {longest:.3f} s of a {took[0]:.3f} s run"
