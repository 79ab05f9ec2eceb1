"""A login's writes sent to PostgreSQL as one statement (issue 13: PostgreSQL ≥ 0.8 × SQLite).

On PostgreSQL a passkey login's writes were six statements, each a round trip: BEGIN, the
passkey's counter, the session, the login event, COMMIT (and four more for a new browser).
Measured in-process (the same rows, 5,000 times), the round trips cost more than the rows:
282 µs of client CPU and 226 µs of the server's per returning login as separate statements,
88 and 126 µs as one. So the statements of the models are kept as they are (each compiled
by ``rawsql.Prepared``, with its bind and result processors) and sent together, each as a
data-modifying CTE of one statement::

    WITH g AS (UPDATE … RETURNING id), w1 AS (INSERT …), w2 AS (INSERT …)
    SELECT 1 / (SELECT count(*) FROM g)

A statement is atomic on its own, without BEGIN or COMMIT: all of it is written, or none.
PostgreSQL runs every data-modifying CTE to completion whether or not the query reads it.

The *gate* is a compare-and-set that must change exactly one row (the passkey's counter:
a concurrent login may have moved it). When it changed none, the final division by zero
fails the statement, so nothing of it is written, and ``LostRace`` is raised.

An INSERT whose id the login needs before the statement (the new device: its id is in the
« pas moi » link's data and in the security event's details) takes it from the table's
sequence first, one round trip of its own, as PostgreSQL's own default would.

Nothing here decides anything: callers (webauthn/fastpath.py) give the login core's
statements and rows (sessions/login_core.py) through the ``Writer`` protocol.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert, Update

from authserver.rawsql import RawConnections

_BIND = re.compile(r"%\(([^)]+)\)s")


class LostRace(Exception):
    """The gate changed no row: nothing of the statement was written."""


# One part of a statement: its compiled form (rawsql's), and the prefix of its binds.
_Part = tuple[Any, str]


class _Shape:
    """The SQL of one sequence of statements (the same statements, the same row keys)."""

    def __init__(self, parts: list[_Part], gated: bool) -> None:
        assert not any(compiled.positional for compiled, _ in parts)  # psycopg: %(name)s
        self.parts = parts
        ctes = []
        for compiled, prefix in parts:
            sql = _BIND.sub(f"%({prefix}\\1)s", compiled.sql)
            ctes.append(f"{prefix[:-1]} AS ({sql})")
        # The gate is the first part, g0: its RETURNING counts the rows it changed.
        tail = "SELECT 1 / (SELECT count(*) FROM g0)" if gated else "SELECT 1"
        self.sql = "WITH " + ", ".join(ctes) + " " + tail

    def params(self, rows: list[Mapping[str, Any]]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for (compiled, prefix), row in zip(self.parts, rows, strict=True):
            for name, value in compiled.params(row).items():
                values[prefix + name] = value
        return values


class OneStatement:
    """Statements and rows collected, then sent as one (``login_core.Writer``).

    ``insert`` takes the row's id from the table's sequence at once; everything else is
    only collected until ``run``."""

    def __init__(self, composer: Composer, cursor: Any) -> None:
        self.composer = composer
        self.cursor = cursor
        self.statements: list[tuple[ClauseElement, Mapping[str, Any]]] = []
        self.gated = False
        self.queued = False

    def gate(self, statement: Update, row: Mapping[str, Any]) -> None:
        """The compare-and-set the rest depends on (at most one, before anything else)."""
        assert not self.statements, "the gate comes first"
        self.statements.append((self.composer.counting(statement), row))
        self.gated = True

    def insert(self, statement: ClauseElement, row: dict[str, Any]) -> int:
        assert isinstance(statement, Insert)
        new_id = self.composer.next_id(self.cursor, statement)
        self.statements.append((statement, {**row, "id": new_id}))
        return new_id

    def execute(self, statement: ClauseElement, row: dict[str, Any]) -> None:
        self.statements.append((statement, row))

    def mail_queued(self) -> None:
        self.queued = True

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()  # everything is sent together already

    def run(self) -> None:
        """One round trip; ``LostRace`` (nothing written) when the gate changed no row."""
        shape = self.composer.shape(self.statements, self.gated)
        try:
            self.cursor.execute(shape.sql, shape.params([row for _, row in self.statements]))
        except self.composer.division_by_zero:
            if self.gated:
                raise LostRace from None
            raise
        self.cursor.fetchone()


class Composer:
    """The shapes of one database, compiled once each (a login has a handful)."""

    def __init__(self, raw: RawConnections) -> None:
        assert raw.dialect.name == "postgresql"
        import psycopg

        self.raw = raw
        self.division_by_zero: type[BaseException] = psycopg.errors.DivisionByZero
        self._counting: dict[int, Update] = {}
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        # The next id of a table's ``id`` sequence, the table named at each call.
        self._nextval = raw.prepare(
            select(func.nextval(func.pg_get_serial_sequence(bindparam("table"), "id")))
        )

    def statement(self, cursor: Any) -> OneStatement:
        """A new statement to collect, sent on ``cursor`` (in autocommit: it commits itself)."""
        return OneStatement(self, cursor)

    def counting(self, statement: Update) -> Update:
        """``statement`` answering the ids of the rows it changed (the gate's count)."""
        found = self._counting.get(id(statement))
        if found is None:
            table: Any = statement.table
            found = statement.returning(*table.primary_key.columns)
            self._counting = {**self._counting, id(statement): found}
        return found

    def next_id(self, cursor: Any, statement: Insert) -> int:
        """The next id of the table ``statement`` inserts into, from its sequence."""
        table: Any = statement.table
        found = self._nextval.first(cursor, {"table": table.name})
        assert found is not None
        return int(found[0])

    def shape(
        self, statements: list[tuple[ClauseElement, Mapping[str, Any]]], gated: bool
    ) -> _Shape:
        key = (gated, *((id(statement), frozenset(row)) for statement, row in statements))
        found = self._shapes.get(key)
        if found is None:
            parts: list[_Part] = []
            for index, (statement, row) in enumerate(statements):
                compiled = self.raw.prepared(statement).compiled(row)
                parts.append((compiled, "g0_" if gated and index == 0 else f"w{index}_"))
            found = _Shape(parts, gated)
            self._shapes = {**self._shapes, key: found}
        return found
