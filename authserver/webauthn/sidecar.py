"""Pending ceremonies beside an SQLite main database, in a small SQLite file of their own.

SQLite lets one writer at a time into a database file. Were ceremonies kept in the
main file, every login page and every passkey login would queue twice on its write
lock (insert at options, delete at verify) behind sign-ups and logins. Here they
have their own file and lock, next to the main database, shared by every worker
process of the machine exactly like the main file (for several machines, configure
Redis). A pending ceremony lives five minutes and is worth nothing after a crash,
hence ``synchronous=OFF``; the table is created when the file is opened, as Redis
needs no schema either.

Single use holds as in the main database: each operation is one autocommit
statement, and of two concurrent DELETEs of a row only one removes it.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
)

from authserver.models import UTCDateTime, utcnow
from authserver.webauthn.challenges import Pending, challenge_key

_metadata = MetaData()
CEREMONIES = Table(
    "ceremonies",
    _metadata,
    Column("challenge_hash", LargeBinary(32), primary_key=True),
    Column("purpose", String(24), nullable=False),
    Column("user_id", Integer),
    Column("binding", LargeBinary(32), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_ceremonies_expires_at", "expires_at"),
)

_SAVE = insert(CEREMONIES)
_COLUMNS = (CEREMONIES.c.purpose, CEREMONIES.c.user_id, CEREMONIES.c.binding)
_PEEK = select(*_COLUMNS, CEREMONIES.c.expires_at).where(
    CEREMONIES.c.challenge_hash == bindparam("key")
)
_SPEND = delete(CEREMONIES).where(CEREMONIES.c.challenge_hash == bindparam("key"))
_CONSUME = _SPEND.returning(*_COLUMNS, CEREMONIES.c.expires_at)
_SWEEP = delete(CEREMONIES).where(CEREMONIES.c.expires_at < bindparam("now"))


def sidecar_path(database_path: str) -> Path:
    """``instance/authserver.db`` → ``instance/authserver.ceremonies.db``."""
    main = Path(database_path)
    return main.with_name(main.stem + ".ceremonies" + (main.suffix or ".db"))


def _create_table(dbapi_connection: Any, _record: Any) -> None:
    """Each new connection makes sure the table exists (idempotent, a few µs)."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite.dialect()
    cursor = dbapi_connection.cursor()
    table = str(CreateTable(CEREMONIES, if_not_exists=True).compile(dialect=dialect))
    cursor.execute(table)
    for index in CEREMONIES.indexes:
        cursor.execute(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    cursor.close()


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class SidecarChallengeStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine: Engine = create_engine(
            f"sqlite:///{path}",
            connect_args={"timeout": 30},
            isolation_level="AUTOCOMMIT",
            pool_size=16,
        )
        event.listen(self.engine, "connect", _pragmas)
        # Created at first use, not at start-up: a server whose database cannot be opened
        # still starts and answers 503 (readiness) rather than failing to boot.
        event.listen(self.engine, "connect", _create_table)

    def save(self, challenge: bytes, pending: Pending, ttl: int) -> None:
        now = utcnow()
        with self.engine.connect() as connection:
            if random.random() < 0.02:  # sweep expired ceremonies now and then
                connection.execute(_SWEEP, {"now": now})
            connection.execute(
                _SAVE,
                {
                    "challenge_hash": challenge_key(challenge),
                    "purpose": pending.purpose,
                    "user_id": pending.user_id,
                    "binding": pending.binding,
                    "expires_at": now + timedelta(seconds=ttl),
                },
            )

    def peek(self, challenge: bytes) -> Pending | None:
        with self.engine.connect() as connection:
            row = connection.execute(_PEEK, {"key": challenge_key(challenge)}).first()
        return _live(row)

    def spend(self, challenge: bytes) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(_SPEND, {"key": challenge_key(challenge)}).rowcount == 1

    def consume(self, challenge: bytes) -> Pending | None:
        with self.engine.connect() as connection:
            row = connection.execute(_CONSUME, {"key": challenge_key(challenge)}).first()
        return _live(row)

    def expire_all(self) -> None:
        """For tests: every pending ceremony is now past its time."""
        from sqlalchemy import update

        with self.engine.connect() as connection:
            connection.execute(
                update(CEREMONIES).values(expires_at=utcnow() - timedelta(seconds=1))
            )

    def pending_count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(CEREMONIES)) or 0

    def dispose(self) -> None:
        self.engine.dispose()


def _live(row: Any) -> Pending | None:
    if row is None or row.expires_at <= utcnow():
        return None
    return Pending(row.purpose, row.user_id, row.binding)
