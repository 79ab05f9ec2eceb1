"""Engine and session handling, the same code for SQLite and PostgreSQL.

Views commit once at the request boundary; helpers only add to the session.
SQLite runs in WAL mode with a busy timeout so that readers never wait for the
writer and short write transactions queue instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session, sessionmaker

EXTENSION_KEY = "authserver.db"

log = logging.getLogger(__name__)


class Database:
    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, **engine_options)
        self.factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.scoped = scoped_session(self.factory)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session for work outside a request (CLI, mail worker): commit or roll back."""
        session = self.factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def release(self) -> None:
        """End the thread's session, even when its connection died since its last statement.

        Closing rolls back the open transaction. When the database went away meanwhile
        (restart, failover) that ROLLBACK fails; nothing is lost, since nothing of it was
        committed, and the request's answer is already made: the connection is invalidated
        (never handed out again) and the failure logged, instead of turning a finished
        answer into a 500.
        """
        if not self.scoped.registry.has():
            return
        session = self.scoped.registry()
        try:
            session.close()
        except DBAPIError as exc:
            log.warning(
                "database connection lost before the end of a request (%s)", type(exc).__name__
            )
            with suppress(Exception):
                session.invalidate()
        finally:
            self.scoped.registry.clear()

    def dispose(self) -> None:
        self.release()
        self.engine.dispose()


def sqlite_file(database_url: str) -> Path | None:
    """The file of an embedded ``sqlite:///`` URL; None for any other database."""
    if not database_url.startswith("sqlite:///"):
        return None
    return Path(database_url.removeprefix("sqlite:///"))


def make_engine(url: str, **options: Any) -> Engine:
    if url.startswith("sqlite"):
        options.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_size", 5)
    options.setdefault("max_overflow", 10)
    return create_engine(url, **options)


BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def init_app(app: Flask, database: Database) -> None:
    app.extensions[EXTENSION_KEY] = database

    @app.teardown_appcontext
    def _remove_session(_exc: BaseException | None) -> None:
        database.release()


def get_database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION_KEY]


def session() -> Session:
    """The current request's session (thread-scoped)."""
    return current_app.extensions[EXTENSION_KEY].scoped()
