"""SQLAlchemy statements run on bare driver connections, for the two hottest paths.

Measured under load (bench/passkey_login.py, bench/forward_auth.py), SQLAlchemy's
per-execution work (cache key, execution context, result objects, pool checkout) cost
more than SQLite itself on a passkey login. Here a statement of the models is compiled
once per dialect and then run on a DB-API cursor: the SQL, the placeholders and the
value conversions (the column types' own bind and result processors, e.g. UTC
datetimes) are SQLAlchemy's, only the per-call machinery is skipped.

Nothing here decides anything: callers keep their statements beside the ORM code that
uses the same tables, so there is one definition of each query.
"""

from __future__ import annotations

import queue
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import DateTime, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from authserver.db import BUSY_TIMEOUT_MS
from authserver.sqlitecodes import is_busy
from authserver.walcheckpoint import Checkpointer, checkpointer_for

Processor = Callable[[Any], Any] | None
T = TypeVar("T")


def retry_busy(call: Callable[[], T], patience: float = 30.0) -> T:
    """``call()`` (one SQLite statement, on a connection with ``busy_timeout=0``), tried
    again while another connection holds the lock it needs: after 50 µs, then twice as long
    each time up to 2 ms, for ``patience`` seconds at most (the engine's busy_timeout).

    SQLite's own busy handler sleeps 1 ms, 2 ms, 5 ms, 10 ms… between tries, for a write
    lock the login path holds about a tenth of a millisecond: a writer that found it taken
    slept ten times longer than it had to wait, and did so about once per passkey login
    under load (strace of bench/passkey_login.py). Only a statement that is safe to run
    again as a whole comes here: an autocommit statement, or ``BEGIN IMMEDIATE``.
    """
    delay = 0.00005
    deadline = 0.0
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + patience
            elif now > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.002)


def take_write_lock(connection: Any) -> None:
    """On a SQLAlchemy connection to SQLite, just begun: take the write lock now, waiting
    for it in ``retry_busy``'s short steps instead of the connection's busy handler (which
    sleeps up to 100 ms between two looks). For the writer that must not starve while the
    login path keeps the lock busy (the mail deliverer once its mail is late)."""
    driver = connection.connection.dbapi_connection
    driver.execute("PRAGMA busy_timeout=0")
    try:
        retry_busy(lambda: driver.execute("BEGIN IMMEDIATE"))
    finally:
        driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class Prepared:
    """One statement compiled for one dialect, with its bind and result processors.

    An INSERT of a whole table is compiled for the keys of the first values given (the
    caller always gives the same keys: a row builder).
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        self.statement = statement
        self.dialect = dialect
        self._compiled: dict[frozenset[str], _Compiled] = {}

    def _for(self, keys: frozenset[str]) -> _Compiled:
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = _Compiled(self.statement, self.dialect, keys)
            self._compiled = {**self._compiled, keys: compiled}  # readers never see a half dict
        return compiled

    def sql(self, keys: set[str]) -> str:
        """The SQL text run for values with these keys."""
        return self._for(frozenset(keys)).sql

    def compiled(self, values: Mapping[str, Any]) -> _Compiled:
        """The compiled form for values with these keys (onestatement.py composes them)."""
        return self._for(frozenset(values))

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> _Compiled:
        compiled = self._for(frozenset(values))
        cursor.execute(compiled.sql, compiled.params(values))
        return compiled

    def first(self, cursor: Any, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row, converted as SQLAlchemy would (None when there is none)."""
        compiled = self.execute(cursor, values)
        row = cursor.fetchone()
        return None if row is None else compiled.convert(row)

    def rowcount(self, cursor: Any, values: Mapping[str, Any]) -> int:
        self.execute(cursor, values)
        return int(cursor.rowcount)


class _Compiled:
    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: frozenset[str]) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=sorted(keys)))
        self.sql = compiled.string
        binds = compiled.binds
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup or []) if self.positional else list(binds)
        self.names = [_key(binds[name]) for name in order]
        # Literals of the statement itself (``.limit(1)``) are binds the caller never names.
        self.literals = {_key(binds[name]): binds[name].effective_value for name in order}
        self.binds = order
        self.processors: list[Processor] = [
            _remembered(binds[name].type, binds[name].type.dialect_impl(dialect), dialect)
            for name in order
        ]
        # What ``params`` walks: each value's name, the value when the caller names none (a
        # literal's, else None) and its conversion.
        self._plan = tuple(
            (name, self.literals[name], process)
            for name, process in zip(self.names, self.processors, strict=True)
        )
        self.results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "selected_columns", ())
        ]
        self.converts = any(self.results)

    def params(self, values: Mapping[str, Any]) -> Any:
        converted: list[Any] = []
        append = converted.append
        for name, literal, process in self._plan:
            value = values.get(name, literal)
            append(value if process is None else process(value))
        if self.positional:
            return tuple(converted)
        return dict(zip(self.binds, converted, strict=True))

    def convert(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self.converts:
            return tuple(row)
        return tuple(
            value if process is None else process(value)
            for value, process in zip(row, self.results, strict=True)
        )


_NONE = object()  # not remembered yet
_REMEMBERED = 64  # distinct instants a kind of datetime column keeps (a login has two or three)
# The conversions remembered, shared by every column of the same type on the same dialect.
_SEEN: dict[tuple[Any, ...], dict[tuple[datetime, Any], Any]] = {}


def _remembered(type_: Any, impl: Any, dialect: Dialect) -> Processor:
    """The bind conversion of ``type_``; for a datetime, remembering its last results.

    A login binds the same instant several times (a session's created, authenticated and
    last-seen times, each row's ``created_at``), and each conversion is two SQLAlchemy calls
    (UTCDateTime's, then SQLite's text format): about 2 µs each. Remembered by value *and*
    time zone: equal instants in two zones are equal datetimes, which a plain DateTime
    column stores as two different texts. A naive value still reaches UTCDateTime's refusal
    (an error is never remembered)."""
    process: Processor = impl.bind_processor(dialect)
    if process is None:
        return process
    if not isinstance(getattr(type_, "impl_instance", type_), DateTime):  # UTCDateTime's impl
        return process
    # Columns whose types print alike convert alike (a storage format is in the repr).
    seen = _SEEN.setdefault((type(dialect), dialect.name, repr(type_), repr(impl)), {})

    def convert(value: Any) -> Any:
        if type(value) is not datetime:
            return process(value)
        key = (value, value.tzinfo)
        found = seen.get(key, _NONE)
        if found is _NONE:
            found = process(value)
            if len(seen) >= _REMEMBERED:
                seen.clear()
            seen[key] = found
        return found

    return convert


def _key(bind: Any) -> str:
    """The caller's name for a bind: ``bindparam("x")`` is ``x``; an INSERT's are columns'."""
    return str(bind.key)


class RawConnections:
    """Driver connections of the engine's pool, a few kept aside past the pool's proxy.

    A checkout from SQLAlchemy's pool (events, reset on return) costs about as much as a
    short query; the hot paths keep up to ``keep`` connections in a LIFO queue instead and
    only give them back to the pool when the queue is full.

    On PostgreSQL, as on SQLite, the reads before ``begin_write`` run in autocommit: psycopg
    wrapped them in a BEGIN and a COMMIT of its own, two more round trips (a forward-auth
    check was three round trips for one SELECT). Sending the write part as one pipeline
    with its own BEGIN and COMMIT saved two more, but psycopg's pipeline machinery cost
    more CPU than they did (passkey login 2.2 -> 3.0 ms in-process): not done.
    """

    def __init__(self, engine: Engine, keep: int = 8, *, short_waits: bool = False) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.errors: type[BaseException] = engine.dialect.loaded_dbapi.Error
        self.idle: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=keep)
        self._prepared: dict[int, Prepared] = {}
        # SQLite only: the connections kept here wait for locks in retry_busy's short steps
        # (their busy_timeout is 0 while they are here), see begin_write.
        self.short_waits = short_waits and engine.dialect.name == "sqlite"
        self.autocommit_reads = engine.dialect.name == "postgresql"
        # SQLite file: this pool's commits leave the WAL checkpoints to a thread of their own.
        self.checkpoints: Checkpointer | None = None
        database = engine.url.database
        in_memory = database == ":memory:" or engine.url.query.get("mode") == "memory"
        if self.short_waits and database and not in_memory:
            self.checkpoints = checkpointer_for(database)

    def prepare(self, statement: ClauseElement) -> Prepared:
        return Prepared(statement, self.dialect)

    def prepared(self, statement: ClauseElement) -> Prepared:
        """``prepare(statement)`` once per statement object, for callers handed statements
        (the login core's) rather than holding their own."""
        found = self._prepared.get(id(statement))
        if found is None:
            found = self.prepare(statement)
            self._prepared = {**self._prepared, id(statement): found}  # readers never see half
        return found

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in a transaction: committed at the end, rolled back on any error.

        A connection whose driver raised is invalidated (a dead connection is never kept).
        """
        try:
            connection = self.idle.get_nowait()
        except queue.Empty:
            connection = self.engine.raw_connection()
            fresh: Any = connection.dbapi_connection
            if self.short_waits:
                fresh.execute("PRAGMA busy_timeout=0")
            if self.checkpoints is not None:
                fresh.execute("PRAGMA wal_autocheckpoint=0")
        driver: Any = connection.dbapi_connection
        checkpoints = self.checkpoints
        try:
            if self.autocommit_reads and not driver.autocommit:
                driver.autocommit = True  # until begin_write (a read-only check leaves it on)
            cursor = driver.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            wrote = checkpoints is not None and driver.in_transaction
            driver.commit()
        except self.errors:
            connection.invalidate()
            raise
        except BaseException:
            driver.rollback()
            self._give_back(connection)
            raise
        if wrote and checkpoints is not None:
            checkpoints.committed()
        self._give_back(connection)

    @contextmanager
    def pipeline(self, cursor: Any) -> Iterator[None]:
        """Statements whose results nobody reads, sent together: on PostgreSQL (psycopg's
        pipeline mode) one round trip for all of them instead of one each; elsewhere as
        usual. An error of any of them is raised when the block ends."""
        if self.dialect.name == "postgresql" and hasattr(cursor.connection, "pipeline"):
            with cursor.connection.pipeline():
                yield
        else:
            yield

    def begin_write(self, cursor: Any) -> None:
        """Start the write part of a transaction whose reads are done (they ran outside
        it, as autocommit statements): on SQLite, take the write lock now, waiting for it
        in short steps; then no later statement of the transaction waits for a lock."""
        if self.short_waits:
            retry_busy(lambda: cursor.execute("BEGIN IMMEDIATE"))
        elif self.autocommit_reads:
            cursor.connection.autocommit = False  # psycopg begins with the next statement

    def _give_back(self, connection: Any) -> None:
        try:
            self.idle.put_nowait(connection)
        except queue.Full:
            if self.short_waits:
                connection.dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if self.checkpoints is not None:  # SQLite's default, as the pool's others
                connection.dbapi_connection.execute("PRAGMA wal_autocheckpoint=1000")
            if self.autocommit_reads:
                connection.dbapi_connection.autocommit = False  # as SQLAlchemy expects it
            connection.close()  # back to SQLAlchemy's pool

    def dispose(self) -> None:
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


def recover_wal(path: Path) -> bool:
    """Once, before the workers start (``authserver serve``'s master): open a SQLite file a
    killed server left with its WAL, let SQLite replay it, and checkpoint it into the file.
    Otherwise the workers opening it at the same moment race for the recovery, and the
    losers get SQLITE_BUSY_RECOVERY on their first statements (issue 16). False when there
    is no such file."""
    if not path.exists():
        return False
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        retry_busy(lambda: connection.execute("PRAGMA journal_mode=WAL"))
        retry_busy(lambda: connection.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        connection.close()
    return True
