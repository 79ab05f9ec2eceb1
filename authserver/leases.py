"""Claiming the rows of an outbox table, for several workers at once: claim tokens and leases.

Both outboxes (e-mails, ``mail/delivery.py``; back-channel logout tokens,
``sessions/oidc/backchannel.py``) are tables with ``id``, ``status`` (``pending`` until sent
or given up), ``attempts``, ``next_attempt_at``, ``claimed_until``, ``claim_token``,
``sent_at`` and ``last_error``; the e-mails' alerts wait as ``facts`` instead of ``pending``
(``mail/rendering.py``), claimed apart. Their workers (threads, processes, instances) share
them so:

- a claim is one statement that stamps a small batch of due rows with a random token and a
  lease: ``WITH due AS MATERIALIZED (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) UPDATE … FROM
  due`` on PostgreSQL (workers never wait for each other's rows), ``UPDATE … WHERE id IN
  (SELECT … LIMIT n)`` on SQLite (one writer at a time anyway);
- the holder renews the lease of the rows it has yet to send *where it still holds the token*
  (the e-mails: once a quarter of the lease has gone by; the back-channel: before each send):
  a batch may take as long as it needs, and a row whose lease ran out and was taken by
  another worker is skipped, never sent twice;
- marking sent, recording a failure and releasing the unsent rows all match the token: a
  worker only ever touches its own claims. Each of them clears the token, so a row that
  carries one is waiting: matching the token is enough, and every statement finds its rows
  by primary key (SQLite otherwise walked the whole queue through the status index).

A worker that dies mid-send leaves its row claimed; another takes it after the lease (the
receiving side may then see that one item twice: each outbox sends a stable identifier,
Message-ID or ``jti``, so that it can tell).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update

from authserver.db import Database
from authserver.models import utcnow
from authserver.rawsql import take_write_lock


@contextmanager
def write(database: Database, *, eager: bool = False) -> Iterator[Any]:
    """One write transaction; ``eager``: on SQLite, the write lock taken at once with short
    waits (``rawsql.take_write_lock``) rather than through the busy handler's sleeps."""
    with database.engine.begin() as connection:
        if eager and database.is_sqlite:
            take_write_lock(connection)
        yield connection


class Outbox:
    """The claim statements of one outbox table (``model``: its ORM class).

    Every statement runs on a Core connection (``engine.begin()``), the batch ones built once
    with bound parameters: through the ORM's bulk update, built again at each call, a claim
    and a finish cost 2-3 ms of CPU each, more than the database spent running them.
    """

    def __init__(self, model: Any, waiting: Sequence[str] = ("pending",)) -> None:
        """``waiting``: the statuses of rows not done yet, which ``next_due_in`` looks at and
        a claim may take, one status per claim (the outbox's alerts queued as their facts are
        claimed apart, by the deliverers that can put them into words: mail/delivery.py)."""
        self.model = model
        self._waiting = tuple(waiting)
        self._first_due: dict[str, Any] = {}
        self._claims: dict[tuple[Any, ...], Any] = {}
        held = and_(  # a row we hold is waiting (see the module's note)
            model.id.in_(bindparam("ids", expanding=True)),
            model.claim_token == bindparam("token"),
        )
        self._renew = (
            update(model).where(held).values(claimed_until=bindparam("until")).returning(model.id)
        )
        self._sent = (
            update(model)
            .where(held)
            .values(
                status="sent",
                sent_at=bindparam("now"),
                attempts=model.attempts + 1,
                claimed_until=None,
                claim_token=None,
                last_error=None,
            )
            .returning(model.id)
        )
        # By primary key only: a condition on the status let SQLite scan every pending row
        # through its index.
        self._release_held = update(model).where(held).values(claimed_until=None, claim_token=None)

    def _claimable(self, now: Any, status: str) -> Any:
        model = self.model
        return and_(
            model.status == status,
            model.next_attempt_at <= now,
            or_(model.claimed_until.is_(None), model.claimed_until < now),
        )

    def _claim_statement(self, sqlite: bool, status: str, columns: Sequence[Any]) -> Any:
        key = (sqlite, status, *columns)
        found = self._claims.get(key)
        if found is not None:
            return found
        model = self.model
        now: Any = bindparam("now")
        # In the order of the (status, next_attempt_at) index, whose entries end with the id:
        # the first ``limit`` due rows are read and no more, however long the queue.
        candidates = (
            select(model.id)
            .where(self._claimable(now, status))
            .order_by(model.next_attempt_at, model.id)
            .limit(bindparam("limit"))
        )
        if sqlite:
            # One statement under SQLite's one write lock: nothing changes between the
            # subquery and the update. Its conditions repeated outside made SQLite walk
            # every due row through the status index (a backlog's delivery grew with the
            # square of its length) instead of looking the chosen ids up.
            chosen = model.id.in_(candidates.scalar_subquery())
            found = update(model).where(chosen)
        else:
            # Rows another worker is claiming right now are skipped, not waited for. Chosen
            # once, in a materialised CTE: as ``id IN (SELECT … LIMIT n FOR UPDATE SKIP
            # LOCKED)`` PostgreSQL claimed every due row, whatever the limit (one worker took
            # the whole queue; tests/test_leases.py).
            due = (
                candidates.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            )
            found = update(model).where(model.id == due.c.id, self._claimable(now, status))
        found = found.values(
            claim_token=bindparam("token"), claimed_until=bindparam("until")
        ).returning(model.id, *columns)
        self._claims = {**self._claims, key: found}  # readers never see a half dict
        return found

    def claim(
        self,
        database: Database,
        *,
        token: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        columns: Sequence[Any],
        eager: bool = False,
        status: str = "pending",
    ) -> list[tuple[Any, ...]]:
        """Claim up to ``limit`` due rows of ``status`` for ``token`` in one statement;
        ``columns`` of each, the longest due first (then the oldest)."""
        if status not in self._waiting:
            raise ValueError(f"not a waiting status: {status}")
        statement = self._claim_statement(database.is_sqlite, status, columns)
        values = {"now": now, "limit": limit, "token": token, "until": now + lease}
        with write(database, eager=eager) as connection:
            rows = connection.execute(statement, values).all()
        return [row[1:] for row in sorted(rows, key=lambda row: row[0])]

    def renew(self, database: Database, row_id: int, token: str, lease: timedelta) -> bool:
        """Extend the lease on one row we still hold; False if it is no longer ours."""
        return row_id in self.renew_all(database, [row_id], token, lease)

    def renew_all(
        self, database: Database, ids: Sequence[int], token: str, lease: timedelta
    ) -> set[int]:
        """Extend the lease on these rows where we still hold them, in one statement; the
        ids still ours."""
        if not ids:
            return set()
        values = {"ids": list(ids), "token": token, "until": utcnow() + lease}
        with database.engine.begin() as connection:
            return set(connection.scalars(self._renew, values))

    def mark_sent(self, database: Database, row_id: int, token: str) -> bool:
        """Record the send of a row we hold; False if the claim was lost meanwhile."""
        return row_id in self.finish(database, token, sent=[row_id])

    def finish(
        self,
        database: Database,
        token: str,
        *,
        sent: Sequence[int],
        release: Sequence[int] = (),
        eager: bool = False,
    ) -> set[int]:
        """Record the sends of rows we hold and give back the ``release`` rows not sent: one
        write transaction for a whole batch. The ids marked sent (not a row whose claim was
        lost meanwhile)."""
        won: set[int] = set()
        with write(database, eager=eager) as connection:
            if sent:
                values = {"ids": list(sent), "token": token, "now": utcnow()}
                won = set(connection.scalars(self._sent, values))
            if release:
                self._release(connection, token, release)
        return won

    def record_failure(
        self,
        database: Database,
        row_id: int,
        token: str,
        *,
        error: str,
        retry_in: Callable[[int], float],
        give_up: Callable[[int], bool],
    ) -> tuple[int, bool] | None:
        """Count a failed attempt on a row we hold and free it.

        ``retry_in(attempts)`` gives the seconds before the next try, ``give_up(attempts)``
        whether the row turns ``failed``. Returns (attempts, given up), or None when the claim
        was lost (the row then belongs to another worker and is left alone).
        """
        model = self.model
        with database.engine.begin() as connection:
            attempts = connection.execute(
                update(model)
                .where(model.id == row_id, model.claim_token == token)
                .values(
                    attempts=model.attempts + 1,
                    claimed_until=None,
                    claim_token=None,
                    last_error=error[:255],
                )
                .returning(model.attempts)
            ).scalar()
            if attempts is None:
                return None
            # Same transaction, and the row is freed only by its commit: nobody claims it
            # between the two statements (row lock on PostgreSQL, one writer on SQLite). A
            # row tried again keeps its status (a claim never changes it): an alert queued
            # as its facts stays so, out of reach of deliverers that cannot word it.
            failed = give_up(attempts)
            retry_at = utcnow() + timedelta(seconds=retry_in(attempts))
            outcome = {"status": "failed"} if failed else {}
            connection.execute(
                update(model).where(model.id == row_id).values(next_attempt_at=retry_at, **outcome)
            )
        return attempts, failed

    def release(self, database: Database, token: str, ids: list[int]) -> None:
        """Give back the rows of this claim that were not sent (and only those)."""
        if not ids:
            return
        with database.engine.begin() as connection:
            self._release(connection, token, ids)

    def _release(self, connection: Any, token: str, ids: Sequence[int]) -> None:
        connection.execute(self._release_held, {"ids": list(ids), "token": token})

    def first_due_created(
        self, database: Database, now: datetime, status: str = "pending"
    ) -> datetime | None:
        """When the row the next claim of ``status`` takes first was queued (None: nothing
        of it is due)."""
        model = self.model
        statement = self._first_due.get(status)
        if statement is None:
            statement = (
                select(model.created_at)
                .where(self._claimable(bindparam("now"), status))
                .order_by(model.next_attempt_at, model.id)
                .limit(1)
            )
            self._first_due = {**self._first_due, status: statement}
        with database.engine.connect() as connection:
            queued: datetime | None = connection.scalar(statement, {"now": now})
        return queued

    def next_due_in(self, database: Database) -> float | None:
        """Seconds until some waiting row can be claimed or worked on (rows claimed
        elsewhere: their lease); None when nothing waits."""
        model = self.model
        now = utcnow()
        with database.engine.begin() as connection:
            when = connection.scalar(
                select(
                    func.min(
                        case(
                            (model.claimed_until > now, model.claimed_until),
                            else_=model.next_attempt_at,
                        )
                    )
                ).where(model.status.in_(self._waiting))
            )
        if when is None:
            return None
        if isinstance(when, str):  # SQLite hands back the bare column text through min()
            when = datetime.fromisoformat(when)
        if when.tzinfo is None:
            when = when.replace(tzinfo=now.tzinfo)
        return max(float((when - now).total_seconds()), 0.0)
