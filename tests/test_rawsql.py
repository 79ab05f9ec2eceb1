"""Waiting for SQLite's write lock in short steps (rawsql.retry_busy), for the login hot path.

SQLite's own busy handler sleeps 1 ms, 2 ms, 5 ms… between tries; these connections have
no busy timeout and retry_busy tries again after 50 µs, doubling up to 2 ms. A real file
and real connections: another connection holds the write lock, then lets it go.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from authserver.rawsql import retry_busy
from authserver.webauthn.challenges import Pending
from authserver.webauthn.sidecar import SidecarChallengeStore


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "busy.db"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (x INTEGER)")
    return path


class Holder(threading.Thread):
    """Another connection in a write transaction for ``seconds``; ``committing`` is set
    just before it commits (and so lets the lock go)."""

    def __init__(self, path: Path, seconds: float) -> None:
        super().__init__()
        self.connection = connect(path)
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.execute("INSERT INTO t VALUES (1)")
        self.seconds = seconds
        self.committing = threading.Event()
        self.start()

    def run(self) -> None:
        time.sleep(self.seconds)
        self.committing.set()
        self.connection.execute("COMMIT")
        self.connection.close()


def test_a_writer_waits_for_the_lock_and_gets_it_as_soon_as_it_is_free(database):
    holder = Holder(database, 0.2)
    writer = connect(database)
    with pytest.raises(sqlite3.OperationalError):  # no busy timeout of its own
        writer.execute("BEGIN IMMEDIATE")
    retry_busy(lambda: writer.execute("BEGIN IMMEDIATE"))
    assert holder.committing.is_set()  # it got the lock once the holder let it go
    writer.execute("INSERT INTO t VALUES (2)")
    writer.execute("COMMIT")
    holder.join()
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 2


def test_it_gives_up_after_its_patience(database):
    holder = Holder(database, 2.0)
    writer = connect(database)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_busy(lambda: writer.execute("BEGIN IMMEDIATE"), patience=0.1)
    assert not holder.committing.is_set()  # it gave up while the lock was still taken
    holder.join()


def test_other_errors_are_not_tried_again(database):
    writer = connect(database)
    calls = []

    def wrong() -> None:
        calls.append(1)
        writer.execute("INSERT INTO missing VALUES (1)")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_busy(wrong)
    assert calls == [1]


def test_the_sidecar_store_waits_for_a_writer_of_its_file(tmp_path):
    store = SidecarChallengeStore(tmp_path / "ceremonies.db")
    pending = Pending("login", None, b"\x01" * 32)
    store.save(b"c" * 32, pending, 60)  # the file and its table exist
    holder = connect(tmp_path / "ceremonies.db")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("DELETE FROM ceremonies WHERE 0")
    released = threading.Event()

    def release() -> None:
        released.set()  # before the commit lets the lock go: no race with the check below
        holder.execute("COMMIT")

    timer = threading.Timer(0.2, release)
    timer.start()
    store.save(b"d" * 32, pending, 60)  # waited, then written
    assert released.is_set()
    assert store.spend_pending(b"d" * 32, pending) is True
    timer.join()
    store.dispose()
