"""Pending ceremonies beside an SQLite main database, in a small SQLite file of their own.

SQLite lets one writer at a time into a database file. Were ceremonies kept in the
main file, every login page and every passkey login would queue twice on its write
lock (insert at options, delete at verify) behind sign-ups and logins. Here they
have their own file and lock, next to the main database, shared by every worker
process of the machine exactly like the main file (for several machines, configure
Redis). A pending ceremony lives five minutes and is worth nothing after a crash,
hence ``synchronous=OFF``; the table is created when the file is first opened, as
Redis needs no schema either.

Single use holds as in the main database: each operation is one autocommit
statement, and of two concurrent DELETEs of a row only one removes it.

This store is reached on every passkey login (three statements), so it talks to
``sqlite3`` directly, one connection per thread, with expiry times as Unix seconds:
no engine, no pool, no type conversion of its own making.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from authserver.rawsql import retry_busy
from authserver.webauthn.challenges import Pending, challenge_key

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ceremonies ("
    " challenge_hash BLOB PRIMARY KEY,"
    " purpose TEXT NOT NULL,"
    " user_id INTEGER,"
    " binding BLOB NOT NULL,"
    " expires_at REAL NOT NULL"
    ") WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS ix_ceremonies_expires_at ON ceremonies (expires_at)",
)
_SAVE = (
    "INSERT INTO ceremonies (challenge_hash, purpose, user_id, binding, expires_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
_PEEK = "SELECT purpose, user_id, binding, expires_at FROM ceremonies WHERE challenge_hash = ?"
_SPEND = "DELETE FROM ceremonies WHERE challenge_hash = ?"
_TAKE_PENDING = (
    _SPEND + " AND purpose = ? AND user_id IS ? AND binding = ? AND expires_at > ?"
    " RETURNING expires_at"
)
_CONSUME = _SPEND + " RETURNING purpose, user_id, binding, expires_at"
_SWEEP = "DELETE FROM ceremonies WHERE expires_at < ?"


def sidecar_path(database_path: str) -> Path:
    """``instance/authserver.db`` → ``instance/authserver.ceremonies.db``."""
    main = Path(database_path)
    return main.with_name(main.stem + ".ceremonies" + (main.suffix or ".db"))


class SidecarChallengeStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the table made) at first use: a server
        whose files cannot be opened still starts, and answers 503 where they are needed."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # No busy timeout: each statement waits for the file's lock in retry_busy's
            # short steps instead of SQLite's 1, 2, 5… ms sleeps.
            connection = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            for statement in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=OFF", *SCHEMA):
                retry_busy(lambda statement=statement: connection.execute(statement))
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _run(self, sql: str, values: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """One autocommit statement (safe to try again while the file is locked)."""
        db = self._db()
        return retry_busy(lambda: db.execute(sql, values))

    def save(self, challenge: bytes, pending: Pending, ttl: float) -> None:
        now = time.time()
        if random.random() < 0.02:  # sweep expired ceremonies now and then
            self._run(_SWEEP, (now,))
        values = (challenge_key(challenge), pending.purpose, pending.user_id, pending.binding)
        self._run(_SAVE, (*values, now + ttl))

    def peek(self, challenge: bytes) -> Pending | None:
        return _live(self._run(_PEEK, (challenge_key(challenge),)).fetchone())

    def spend(self, challenge: bytes) -> bool:
        return self._run(_SPEND, (challenge_key(challenge),)).rowcount == 1

    def spend_pending(self, challenge: bytes, pending: Pending) -> bool:
        return self.take_pending(challenge, pending) is not None

    def take_pending(self, challenge: bytes, pending: Pending) -> float | None:
        values = (challenge_key(challenge), pending.purpose, pending.user_id, pending.binding)
        now = time.time()
        row = self._delete_returning(_TAKE_PENDING, (*values, now))
        return None if row is None else max(0.0, row[0] - now)

    def put_back(self, challenge: bytes, pending: Pending, seconds: float) -> None:
        if seconds > 0:
            self.save(challenge, pending, seconds)

    def consume(self, challenge: bytes) -> Pending | None:
        return _live(self._delete_returning(_CONSUME, (challenge_key(challenge),)))

    def _delete_returning(self, sql: str, values: tuple[object, ...]) -> Any:
        """The row a DELETE … RETURNING removed (None: none), waiting for the file's lock."""
        db = self._db()

        def run() -> Any:
            cursor = db.execute(sql, values)
            row = cursor.fetchone()
            cursor.close()  # the DELETE … RETURNING is done once its cursor is closed
            return row

        return retry_busy(run)

    def expire_all(self) -> None:
        """For tests: every pending ceremony is now past its time."""
        self._run("UPDATE ceremonies SET expires_at = ?", (time.time() - 1,))

    def pending_count(self) -> int:
        return int(self._run("SELECT count(*) FROM ceremonies").fetchone()[0])

    def dispose(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()


def _live(row: tuple[str, int | None, bytes, float] | None) -> Pending | None:
    if row is None or row[3] <= time.time():
        return None
    return Pending(row[0], row[1], row[2])
