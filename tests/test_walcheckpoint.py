"""WAL checkpoints in a thread of their own (authserver/walcheckpoint.py), not in the commit
of a login: the hot paths' connections turn SQLite's automatic checkpoint off, the thread
keeps the WAL from growing. A real file, real connections, a real fork."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authserver.db import make_engine
from authserver.rawsql import RawConnections
from authserver.walcheckpoint import RESTART_FRAMES, Checkpointer


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[RawConnections]:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    raw = RawConnections(engine, short_waits=True)
    yield raw
    raw.dispose()
    engine.dispose()


def write(raw: RawConnections, rows: int = 1) -> None:
    with raw.transaction() as cursor:
        raw.begin_write(cursor)
        for _ in range(rows):
            cursor.execute("INSERT INTO t (body) VALUES (?)", ("x" * 3000,))


def wal_frames(path: str) -> int:
    """Frames in the WAL since it last started over (a checkpoint lets the next writer
    start it over)."""
    connection = sqlite3.connect(path, timeout=5)
    try:
        return int(connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        connection.close()


def wait_for(condition, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_hot_connections_leave_checkpoints_to_the_thread(raw: RawConnections):
    checkpoints = raw.checkpoints
    assert checkpoints is not None
    with raw.transaction() as cursor:
        assert cursor.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for _ in range(300):  # ~1,000 pages: SQLite's own checkpoint would have run by now
        write(raw)
    after_writes = checkpoints.checkpoints
    assert wait_for(lambda: checkpoints.checkpoints > after_writes)  # the last commit's turn
    assert checkpoints.thread is not None and checkpoints.thread.name == "sqlite-checkpoint"
    # Checkpointed: the next write starts the WAL over instead of growing it.
    write(raw)
    assert wal_frames(checkpoints.path) < 20


def test_a_read_only_transaction_wakes_nothing(raw: RawConnections):
    checkpoints = raw.checkpoints
    assert checkpoints is not None
    write(raw)
    assert wait_for(lambda: not checkpoints.wake.is_set())
    with raw.transaction() as cursor:
        cursor.execute("SELECT count(*) FROM t").fetchone()
    assert not checkpoints.wake.is_set()


def test_a_connection_given_back_to_the_pool_checkpoints_again(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    raw = RawConnections(engine, keep=1, short_waits=True)
    try:
        with raw.transaction(), raw.transaction():
            pass  # the inner one's connection is kept aside, the outer one's goes back
        with engine.connect() as connection:  # the very connection, back in the pool
            value = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert value == 1000
    finally:
        engine.dispose()


def test_the_thread_ends_when_idle_and_starts_again_at_the_next_commit(tmp_path: Path):
    path = tmp_path / "idle.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()
    checkpointer = Checkpointer(str(path), interval=0.01, idle_exit=0.2)
    checkpointer.committed()
    first = checkpointer.thread
    assert first is not None and wait_for(lambda: checkpointer.checkpoints == 1)
    first.join(timeout=5)
    assert not first.is_alive() and not checkpointer.running
    checkpointer.committed()
    assert checkpointer.thread is not first
    assert wait_for(lambda: checkpointer.checkpoints == 2)


def _child_checkpoints(checkpointer: Checkpointer, answers: multiprocessing.Queue) -> None:
    before = checkpointer.checkpoints
    checkpointer.committed()
    thread = checkpointer.thread
    alive = thread is not None and thread.is_alive()
    answers.put(alive and wait_for(lambda: checkpointer.checkpoints > before))


def test_a_forked_worker_starts_its_own_thread(tmp_path: Path):
    path = tmp_path / "fork.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()
    checkpointer = Checkpointer(str(path), interval=0.01, idle_exit=5)
    checkpointer.committed()  # the parent's thread: not copied into the child
    assert checkpointer.running and wait_for(lambda: checkpointer.checkpoints == 1)
    time.sleep(0.05)  # done with SQLite (a fork must not copy a lock it holds)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_child_checkpoints, args=(checkpointer, answers))
    child.start()
    assert answers.get(timeout=10) is True
    child.join(timeout=10)


def test_the_wal_starts_over_while_readers_never_stop(tmp_path: Path):
    """Under continuous logins some read always uses the WAL, so no writer ever started it
    over: it grew by every commit for as long as the load lasted (227 MB after 10 s of
    passkey logins). Past RESTART_FRAMES, a RESTART checkpoint lets the next writer start
    it over, while short reads go on."""
    path = tmp_path / "wal.db"
    writer = sqlite3.connect(path, isolation_level=None, timeout=5)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as the hot paths: the checkpoints are ours
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    stop = threading.Event()

    def reads() -> None:  # short reads, one always under way, as under logins
        reader = sqlite3.connect(path, isolation_level=None, timeout=5)
        while not stop.is_set():
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM t WHERE id = 1").fetchone()
            time.sleep(0.0005)
            reader.execute("COMMIT")
        reader.close()

    def write(rows: int) -> None:
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 3000,)] * rows)
        writer.execute("COMMIT")

    readers = [threading.Thread(target=reads) for _ in range(2)]
    checkpoints = Checkpointer(str(path))
    own = sqlite3.connect(path, timeout=0, isolation_level=None)
    for thread in readers:
        thread.start()
    try:
        for _ in range(3):
            while wal_frames(str(path)) < RESTART_FRAMES:
                write(50)
            time.sleep(0.01)  # the readers move on to the last snapshot
            checkpoints._checkpoint(own)
            write(1)
            # Started over: the next write's frames, not RESTART_FRAMES and more.
            assert wal_frames(str(path)) < RESTART_FRAMES / 4
        assert checkpoints.restarts == 3
    finally:
        stop.set()
        for thread in readers:
            thread.join()
        own.close()
        writer.close()
