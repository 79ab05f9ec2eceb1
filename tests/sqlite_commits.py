"""Counting the write transactions SQLite commits for one thread (issue 16: every write
transaction queues on the embedded database's single write lock)."""

from __future__ import annotations

import threading

from flask import Flask
from sqlalchemy import event

from authserver.db import get_database


def count_commits(app: Flask) -> list[int]:
    """Every COMMIT SQLite runs for the calling thread from now on, ORM sessions and driver
    connections alike (SQLite's own statement trace); other threads' (the mail worker's, a
    request's in another thread) are not counted. ``[count]``, updated in place."""
    from authserver.throttle import throttle

    commits = [0]
    mine = threading.get_ident()

    def trace(sql: str) -> None:
        if threading.get_ident() == mine and sql.strip().upper().startswith("COMMIT"):
            commits[0] += 1

    def on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.set_trace_callback(trace)

    engine = get_database(app).engine
    event.listen(engine, "connect", on_connect)
    engine.dispose()  # every connection from now on is a traced one
    with app.app_context():
        throttle().storage.raw.dispose()
    return commits
