"""Failed mail (refused for good): counted by /readyz and /metrics, put back by the CLI."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import update

from authserver import settings_of
from authserver.cli import cli
from authserver.db import get_database
from authserver.mail import worker_of
from authserver.mail.delivery import deliver_due
from authserver.models import OutboxMail, utcnow
from tests.mail.test_delivery import queue, rows


def test_failed_mail_is_counted_by_readyz_and_metrics_and_requeued_by_the_cli(
    app: Flask, smtp, monkeypatch: pytest.MonkeyPatch
):
    worker_of(app).stop()
    database = get_database(app)
    failed = queue(database, ["x@entreprise.fr", "y@entreprise.fr"], status="failed")
    queue(database, ["z@entreprise.fr"])
    client = app.test_client()

    ready = client.get("/readyz")
    assert ready.status_code == 200  # failed mail is the operator's business, not the LB's
    assert ready.get_json()["outbox"]["failed"] == 2
    assert ready.get_json()["outbox"]["pending"] == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^authserver_outbox_failed 2\.0$", metrics, re.M), metrics

    settings = settings_of(app)
    for name, value in {
        "AUTHSERVER_DATABASE_URL": database.url,
        "AUTHSERVER_INSTANCE_PATH": str(settings.instance_path),
        "AUTHSERVER_SECRET_KEY": settings.secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["mail", "requeue", "--id", str(failed[0])])
    assert result.exit_code == 0, result.output
    assert "1" in result.output
    assert rows(database)[failed[0]].status == "pending"
    assert rows(database)[failed[1]].status == "failed"
    result = CliRunner().invoke(cli, ["mail", "requeue"])
    assert result.exit_code == 0, result.output
    assert all(r.status == "pending" for r in rows(database).values())

    with database.session_scope() as session:
        session.execute(update(OutboxMail).values(next_attempt_at=utcnow()))
    assert deliver_due(database, worker_of(app).transport, settings) == (3, 0)
    assert client.get("/readyz").get_json()["outbox"] == {
        "pending": 0,
        "failed": 0,
        "oldest_pending_seconds": 0.0,
    }
