"""Retention (issue 15): what is deleted or pseudonymised after how long, what stays (the
audits), in batches; the CLI, the detector thread, /readyz and /metrics."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select

from authserver import retention
from authserver.alerts.console.worker import DetectorWorker
from authserver.cli import cli
from authserver.db import get_database
from authserver.models import (
    BackchannelLogout,
    Device,
    LoginEvent,
    OutboxMail,
    SecurityAction,
    SecurityEvent,
    utcnow,
)
from tests.alerts.console_helpers import add_alert, add_events, add_user

NOW = utcnow()


def ago(days: float):
    return NOW - timedelta(days=days)


def seed(app) -> dict[str, int]:
    """Rows on both sides of each limit (default policy: 180, 365, 90, 30 days)."""
    user = add_user(app, "rgpd.test")
    staff = add_user(app, "agent.rgpd", role="security")
    add_events(
        app,
        [
            {"created_at": ago(400), "ip": "198.51.100.1"},  # deleted
            {"created_at": ago(200), "ip": "198.51.100.2"},  # deleted
            {"created_at": ago(100), "ip": "198.51.100.3"},  # kept, pseudonymised
            {"created_at": ago(100), "ip": "198.51.100.3"},  # same pseudonym
            {"created_at": ago(5), "ip": "198.51.100.4"},  # kept as is
        ],
    )
    old_alert = add_alert(app, user_id=user, created_at=ago(400), ip="203.0.113.1")
    acted_alert = add_alert(app, user_id=user, created_at=ago(400), ip="203.0.113.2")
    recent_alert = add_alert(app, user_id=user, created_at=ago(10), ip="203.0.113.3")
    with get_database(app).session_scope() as session:
        session.add(SecurityAction(alert_id=acted_alert, actor_id=staff, action="note", note="vu"))
        session.add(
            Device(
                user_id=user,
                cookie_hash=b"x" * 32,
                first_seen_at=ago(300),
                last_seen_at=ago(120),
                last_ip="192.0.2.50",
                user_agent="Mozilla/5.0 Firefox",
                browser="Firefox",
                system="Linux",
            )
        )
        for sent_days, status in ((40, "sent"), (5, "sent"), (40, "failed")):
            session.execute(
                insert(OutboxMail).values(
                    kind="x",
                    recipient="a@example.fr",
                    subject="s",
                    body_text="corps",
                    status=status,
                    created_at=ago(sent_days),
                    next_attempt_at=ago(sent_days),
                    sent_at=ago(sent_days) if status == "sent" else None,
                )
            )
        session.add(
            BackchannelLogout(
                client_id="c",
                uri="https://x.example/bc",
                sub="s",
                sid="i",
                status="sent",
                created_at=ago(40),
            )
        )
    return {"old": old_alert, "acted": acted_alert, "recent": recent_alert}


def test_the_policy(app) -> None:
    alerts = seed(app)
    database = get_database(app)
    secret = app.config["SECRET_KEY"]
    done = retention.purge(database, retention.Policy(), secret, NOW, pause=0)
    assert done == {
        "login_events_deleted": 2,
        "security_events_deleted": 1,
        "login_event_ips_pseudonymised": 2,
        "security_event_ips_pseudonymised": 1,
        "device_ips_pseudonymised": 1,
        "sent_mails_deleted": 1,
        "logout_notices_deleted": 1,
    }
    with database.session_scope() as session:
        ips = sorted(session.scalars(select(LoginEvent.ip)))
        pseudonym = retention.pseudonym(secret, "198.51.100.3")
        assert ips == ["198.51.100.4", pseudonym, pseudonym]
        assert pseudonym.startswith("~") and "198.51" not in pseudonym
        kept = {a.id: a.ip for a in session.scalars(select(SecurityEvent))}
        assert set(kept) == {alerts["acted"], alerts["recent"]}  # the audit's alert stays
        assert kept[alerts["acted"]].startswith("~") and kept[alerts["recent"]] == "203.0.113.3"
        device = session.scalar(select(Device))
        assert device.last_ip.startswith("~") and device.user_agent == ""
        assert device.browser == "Firefox"
        assert sorted(session.scalars(select(OutboxMail.status))) == ["failed", "sent"]
        assert session.scalar(select(func.count()).select_from(SecurityAction)) == 1
    # A second run finds nothing more.
    again = retention.purge(database, retention.Policy(), secret, NOW, pause=0)
    assert set(again.values()) == {0}


def test_batches_cover_more_than_one_batch(app, monkeypatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 7)
    add_events(app, [{"created_at": ago(200 + i)} for i in range(20)])
    done = retention.purge(get_database(app), retention.Policy(), "k" * 32, NOW, pause=0)
    assert done["login_events_deleted"] == 20


def test_the_command_the_detector_thread_readyz_and_metrics(app) -> None:
    seed(app)
    client = app.test_client()
    ready = client.get("/readyz").get_json()
    assert ready["retention"]["login_events"].startswith(str(ago(400).year))
    metrics = client.get("/metrics").get_data(as_text=True)
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith('authserver_retention_oldest_row_seconds{table="login_events"}')
    )
    assert float(line.split()[-1]) > 399 * 86400

    worker = DetectorWorker(get_database(app), 30, app)
    done = worker.purge_if_due(every=0)
    assert done is not None and done["login_events_deleted"] == 2
    assert worker.purge_if_due() is None  # not again within the hour

    env = {
        "AUTHSERVER_DATABASE_URL": get_database(app).url,
        "AUTHSERVER_INSTANCE_PATH": app.instance_path,
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "AUTHSERVER_RETENTION_LOGIN_EVENTS_DAYS": "1",
        "AUTHSERVER_SECURITY_LOG": "off",
    }
    result = CliRunner().invoke(cli, ["retention", "purge"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["login_events_deleted"] == 3  # all but today's: none
    ready = client.get("/readyz").get_json()
    assert ready["retention"]["login_events"] is None


def test_the_purge_rests_longer_on_postgresql_and_never_less_than_its_pause():
    """Issue 15: PostgreSQL works on after each batch's commit (WAL, autovacuum): 16 times the
    batch's duration there, 8 on SQLite, the pause at least."""
    from authserver.retention import PAUSE, rest_after

    assert rest_after(0.05, sqlite=True) == pytest.approx(0.4)
    assert rest_after(0.05, sqlite=False) == pytest.approx(0.8)
    assert rest_after(0.0001, sqlite=True) == PAUSE
