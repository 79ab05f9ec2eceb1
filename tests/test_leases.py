"""The outbox claims (authserver/leases.py) find their rows by primary key and stop at the
batch: their cost does not grow with the length of the queue.

Issue 13: during a burst of new-browser logins the mail outbox holds thousands of pending
alerts. SQLite answered the claim, the lease renewal and the release by walking every pending
row through the (status, next_attempt_at) index, and sorted all due rows to take ten: the
delivery of a backlog grew with the square of its length, on the cores that answer logins.
Counted here in SQLite virtual-machine steps (its progress handler), which do not depend on
the machine's speed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import event, insert

from authserver.db import Database, get_database
from authserver.leases import Outbox
from authserver.mail import worker_of
from authserver.models import OutboxMail, utcnow

OUTBOX = Outbox(OutboxMail)
LEASE = timedelta(seconds=120)
STEP = 50  # SQLite instructions per progress-handler call


def quiet(app: Flask) -> Database:
    """The app's database, its own mail worker stopped: woken by the rows queued here, it
    claimed them before the test did (a test failed so, once in a full run)."""
    worker_of(app).stop()
    return get_database(app)


def queue(database: Database, count: int) -> None:
    now = utcnow()
    row = {
        "created_at": now,
        "kind": "new_device",
        "subject": "Nouvelle connexion",
        "body_text": "texte",
        "body_html": None,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now - timedelta(seconds=1),
    }
    with database.session_scope() as session:
        session.execute(
            insert(OutboxMail), [{**row, "recipient": f"e{i}@example.fr"} for i in range(count)]
        )


def steps(database: Database, work: Callable[[], Any]) -> int:
    """SQLite's instructions (in units of ``STEP``) run by ``work``'s statements."""
    count = [0]
    touched: list[Any] = []

    def tick() -> int:
        count[0] += 1
        return 0  # go on

    def before(conn: Any, *_args: Any) -> None:
        driver = conn.connection.dbapi_connection
        driver.set_progress_handler(tick, STEP)
        touched.append(driver)

    event.listen(database.engine, "before_cursor_execute", before)
    try:
        work()
    finally:
        event.remove(database.engine, "before_cursor_execute", before)
        for driver in touched:
            driver.set_progress_handler(None, STEP)
    return count[0]


def one_batch(database: Database) -> int:
    """The steps of a whole batch's life: claim ten, renew, mark five sent, release five."""
    token = secrets.token_hex(16)

    def work() -> None:
        rows = OUTBOX.claim(
            database, token=token, now=utcnow(), limit=10, lease=LEASE, columns=(OutboxMail.id,)
        )
        ids = [row[0] for row in rows]
        assert len(ids) == 10
        assert OUTBOX.renew_all(database, ids, token, LEASE) == set(ids)
        assert OUTBOX.finish(database, token, sent=ids[:5], release=ids[5:]) == set(ids[:5])

    return steps(database, work)


def test_a_claim_costs_the_same_behind_a_short_or_a_long_queue(app: Flask) -> None:
    database = quiet(app)
    queue(database, 50)
    short = one_batch(database)
    queue(database, 3000)
    long = one_batch(database)
    # Before: 35 times as many steps behind 3,050 pending rows as behind 50.
    assert long <= 2 * short + 20, (short, long)


def test_the_longest_due_goes_first(backend_app: Flask) -> None:
    """A retried mail whose time came before a fresh one's is claimed before it (the
    index's order: next attempt, then id); on PostgreSQL as on SQLite."""
    database = quiet(backend_app)
    queue(database, 3)
    now = utcnow()
    with database.session_scope() as session:
        session.query(OutboxMail).filter(OutboxMail.id == 3).update(
            {OutboxMail.next_attempt_at: now - timedelta(minutes=5)}
        )
    rows = OUTBOX.claim(
        database, token="t", now=now, limit=2, lease=LEASE, columns=(OutboxMail.id,)
    )
    assert {row[0] for row in rows} == {1, 3}


def test_a_claim_takes_at_most_its_limit(backend_app: Flask) -> None:
    database = quiet(backend_app)
    queue(database, 5)
    rows = OUTBOX.claim(
        database, token="t", now=utcnow(), limit=2, lease=LEASE, columns=(OutboxMail.id,)
    )
    assert len(rows) == 2, rows
