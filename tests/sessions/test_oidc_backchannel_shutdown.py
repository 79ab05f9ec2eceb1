"""SIGTERM to ``authserver serve``: the back-channel logout being POSTed is finished and
marked, the rest of its batch released, the worker's thread stopped before the process goes.

A real gunicorn process (the code of this checkout, through PYTHONPATH), a service that
takes a second per logout so that the signal always lands in the middle of a POST.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import jwt as pyjwt
from sqlalchemy import create_engine, select

from authserver.models import BackchannelLogout, utcnow
from tests.multi.single import start_server, wait_until
from tests.sessions.oidc_support import Receiver


def test_serve_on_sigterm_finishes_the_logout_in_flight_and_releases_the_rest(
    tmp_path: Path, sqlite_template: Path, smtp
):
    path = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    service = Receiver(delay=1.0)
    engine = create_engine(url)
    now = utcnow()
    try:
        with engine.begin() as connection:
            connection.execute(
                BackchannelLogout.__table__.insert(),
                [
                    {
                        "client_id": "kit-csp",
                        "uri": service.url,
                        "sub": f"sub{i}",
                        "sid": f"sid{i}",
                        "reason": "test",
                        "jti": f"jti-{i}",
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                    for i in range(8)
                ],
            )
        # Its first request (the health check) starts the sender: rows of a previous run.
        server = start_server(tmp_path, url, smtp.url, workers=1)
        assert server.proc is not None
        try:
            wait_until(lambda: len(service.tokens) >= 1, 30, "a first logout delivered")
            time.sleep(0.3)  # the next POST is in flight (one second each)
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=30) == 0, server.tail()
        finally:
            server.stop()
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    BackchannelLogout.jti,
                    BackchannelLogout.status,
                    BackchannelLogout.claim_token,
                    BackchannelLogout.claimed_until,
                )
            ).all()
    finally:
        engine.dispose()
        service.close()

    received = Counter(
        pyjwt.decode(token, options={"verify_signature": False})["jti"] for token in service.tokens
    )
    sent = {row.jti for row in rows if row.status == "sent"}
    assert received == Counter(dict.fromkeys(sent, 1)), server.tail()
    assert 2 <= len(sent) < len(rows)  # the one in flight finished; then it stopped
    waiting = [row for row in rows if row.status != "sent"]
    assert all(row.status == "pending" for row in waiting)
    assert [row.jti for row in waiting if row.claim_token or row.claimed_until] == []
