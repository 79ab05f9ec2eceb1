"""A worker's database pool holds every connection its threads may hold at once (ops.py)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from authserver import create_app
from authserver.config import load_settings
from authserver.db import get_database
from authserver.ops import BACKGROUND_THREADS
from authserver.sessions.forward_auth import READER_KEY
from authserver.throttle import EXTENSION_KEY as THROTTLE_KEY
from authserver.throttle import KEPT_CONNECTIONS
from authserver.webauthn.fastpath import EXTENSION_KEY as FAST_LOGIN_KEY


@pytest.mark.parametrize("threads", [1, 4, 8])
def test_after_a_burst_every_thread_still_gets_a_connection(
    tmp_path: Path, sqlite_template: Path, threads: int
) -> None:
    database = tmp_path / "pool.db"
    shutil.copy(sqlite_template, database)
    settings = load_settings(
        {
            "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
            "AUTHSERVER_DATABASE_URL": f"sqlite:///{database}",
            "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        }
    )
    app = create_app(
        settings=replace(settings, threads=threads),
        test_config={"TESTING": True, "MAIL_WORKER_DISABLED": True},
    )
    engine = get_database(app).engine
    engine.pool._timeout = 0.2  # a request that would wait answers 503 after POOL_TIMEOUT
    held = []
    try:
        # What a burst leaves behind: every thread answered forward-auth and a passkey login
        # at once, the throttle's counters were busy; their driver connections are kept.
        for keeper, count in (
            (app.extensions[READER_KEY].raw, threads),
            (app.extensions[FAST_LOGIN_KEY].raw, threads),
            (app.extensions[THROTTLE_KEY].storage.raw, KEPT_CONNECTIONS),
        ):
            for _ in range(count):
                keeper.idle.put_nowait(engine.raw_connection())
        # Then every request thread opens its ORM session, and the background threads work.
        for _ in range(threads + BACKGROUND_THREADS):
            held.append(engine.raw_connection())
        with pytest.raises(PoolTimeout):  # the pool is bounded all the same
            held.append(engine.raw_connection())
    finally:
        for connection in held:
            connection.close()
        get_database(app).dispose()
