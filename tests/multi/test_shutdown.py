"""SIGTERM: in-flight requests and the mail being sent finish, the outbox stays consistent.

``authserver serve`` (each engine) and ``authserver mail deliver`` are real processes here, on a
relay that takes a second per mail, so that the signal always lands in the middle of a send.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from authserver.models import OutboxMail
from tests.conftest import fresh_pg_url
from tests.mail.faulty_smtp import FaultySMTPServer
from tests.multi.single import (
    SlowRequest,
    queue,
    server_env,
    start_deliver,
    start_server,
    wait_until,
)
from tests.services import free_port

MESSAGE_ID = re.compile(r"outbox-(\d+)")


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "authserver.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    postgres = request.getfixturevalue("postgres")
    return fresh_pg_url(postgres, request.getfixturevalue("pg_template"))


@pytest.fixture
def relay() -> Iterator[FaultySMTPServer]:
    server = FaultySMTPServer(slow_seconds=1.0).start()
    try:
        yield server
    finally:
        server.stop()


def assert_outbox_consistent(database_url: str, relay: FaultySMTPServer) -> set[int]:
    """Every mail the relay accepted is marked sent (once); every other one is free to claim."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    OutboxMail.id,
                    OutboxMail.status,
                    OutboxMail.claim_token,
                    OutboxMail.claimed_until,
                )
            ).all()
    finally:
        engine.dispose()
    delivered = Counter(
        int(MESSAGE_ID.search(message_id).group(1))  # type: ignore[union-attr]
        for message_id in relay.message_ids().elements()
    )
    sent = {row.id for row in rows if row.status == "sent"}
    assert delivered == Counter(dict.fromkeys(sent, 1))
    waiting = [row for row in rows if row.status != "sent"]
    assert all(row.status == "pending" for row in waiting)
    assert [row.id for row in waiting if row.claim_token or row.claimed_until] == []
    return sent


@pytest.mark.parametrize("engine", ["gunicorn", "granian"])
def test_serve_on_sigterm_finishes_the_request_and_the_mail_in_flight(
    tmp_path: Path, database_url: str, relay: FaultySMTPServer, engine: str
):
    ids = queue(database_url, 8)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = start_server(
        tmp_path, database_url, relay.url, args=("--engine", engine), TMPDIR=str(scratch)
    )
    assert server.proc is not None
    try:
        assert len(list(scratch.glob("authserver-metrics-*"))) == 1
        wait_until(lambda: relay.connections >= 1, 20, "a mail being sent")
        request = SlowRequest(server.port, "/webauthn/login/options", b"{}")
        time.sleep(0.3)  # the worker is reading the body
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        status, body = request.finish()
        assert status == 200, body[:300]
        assert "challenge" in json.loads(body)
        assert server.proc.wait(timeout=30) == 0, server.tail()
    finally:
        server.stop()
    sent = assert_outbox_consistent(database_url, relay)
    assert 1 <= len(sent) < len(ids)  # it stopped between two mails, not after the queue
    assert list(scratch.glob("authserver-metrics-*")) == []  # the metrics folder went too


def test_mail_deliver_on_sigterm_finishes_the_mail_in_flight(
    tmp_path: Path, database_url: str, relay: FaultySMTPServer
):
    ids = queue(database_url, 8)
    metrics_port = free_port()
    env = server_env(tmp_path, database_url, relay.url, free_port())
    deliver = start_deliver(tmp_path, env, "--metrics-port", str(metrics_port))
    try:
        wait_until(lambda: len(relay.messages) >= 2, 30, "two mails delivered")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        sent_so_far = float(re.search(r"^authserver_mail_sent_total (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
        assert sent_so_far >= 2
        assert re.search(r"^authserver_outbox_pending \d", text, re.M)
        deliver.send_signal(signal.SIGTERM)
        assert deliver.wait(timeout=15) == 0
    finally:
        if deliver.poll() is None:
            deliver.kill()
            deliver.wait()
    sent = assert_outbox_consistent(database_url, relay)
    assert 2 <= len(sent) < len(ids)
