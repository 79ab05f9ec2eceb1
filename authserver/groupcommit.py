"""Group commit: the write parts of one process's concurrent requests in one transaction.

On SQLite every write transaction takes the database's one write lock, and its commit
appends every page it changed to the WAL. Concurrent passkey logins each took the lock in
turn (spinning for it in ``rawsql.retry_busy``), rewrote the same hot pages (the last leaf
of each table and of each time-ordered index: login events, sessions, security events,
outbox) and committed: a new-browser login wrote about 25 pages, a returning one about 10
(``strace`` of one worker: 146 KB and 69 KB written per login).

Here the first thread that has something to write becomes the *leader*: it takes every
write waiting at that moment (its own included), runs them in one transaction, each in a
``SAVEPOINT`` of its own, commits once, and hands each thread its result. Threads that
arrive meanwhile wait (without spinning, without the interpreter lock) and the next of
them leads the next batch. A lone request is a batch of one: nothing waits for company.

A job's exception rolls back its own statements only (``ROLLBACK TO``) and is raised in
its own thread; the others of the batch commit. A failed commit is raised in every thread
of the batch: nothing of it was written. What a job does outside the transaction (the
ceremony spent in its own store) is not undone, exactly as with a transaction per job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from authserver.rawsql import RawConnections

T = TypeVar("T")
# A bound on one transaction's length; a process runs a few request threads anyway.
MAX_BATCH = 16


class _Slot(Generic[T]):
    __slots__ = ("done", "error", "job", "value")

    def __init__(self, job: Callable[[Any], T]) -> None:
        self.job = job
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class GroupCommit:
    """``run(job)``: ``job(cursor)`` inside a write transaction, shared with the jobs of
    other threads submitted meanwhile; returns the job's value once it is committed."""

    def __init__(self, raw: RawConnections) -> None:
        self.raw = raw
        self.ready = threading.Condition(threading.Lock())
        self.waiting: list[_Slot[Any]] = []
        self.leading = False
        # Batches and jobs committed so far (tests, the benchmark's notes).
        self.batches = 0
        self.jobs = 0

    def run(self, job: Callable[[Any], T]) -> T:
        slot: _Slot[T] = _Slot(job)
        with self.ready:
            self.waiting.append(slot)
            while self.leading and not slot.done:
                self.ready.wait()
            if slot.done:
                return slot.outcome()
            self.leading = True
            self.waiting.remove(slot)  # the leader's own job always goes in its batch
            batch = [slot, *self.waiting[: MAX_BATCH - 1]]
            self.waiting = self.waiting[MAX_BATCH - 1 :]
        try:
            self._commit(batch)
        finally:
            with self.ready:
                self.leading = False
                self.ready.notify_all()
        return slot.outcome()

    def _commit(self, batch: list[_Slot[Any]]) -> None:
        """Every slot of ``batch`` ends done, whatever happens here."""
        try:
            with self.raw.transaction() as cursor:
                self.raw.begin_write(cursor)
                if len(batch) == 1:  # alone: its failure rolls the transaction back
                    batch[0].value = batch[0].job(cursor)
                else:
                    for slot in batch:
                        self._one(cursor, slot)
            self.batches += 1
            self.jobs += len(batch)
        except BaseException as exc:  # BEGIN, a lone job or the commit failed: nothing written
            for slot in batch:
                if slot.error is None:
                    slot.error = exc
        finally:
            for slot in batch:
                slot.done = True

    @staticmethod
    def _one(cursor: Any, slot: _Slot[Any]) -> None:
        cursor.execute("SAVEPOINT job")
        try:
            slot.value = slot.job(cursor)
        except BaseException as exc:
            slot.error = exc
            cursor.execute("ROLLBACK TO job")
        cursor.execute("RELEASE job")
