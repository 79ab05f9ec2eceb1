"""Group commit (authserver/groupcommit.py): concurrent writes of one process share one
SQLite transaction, each job in its own savepoint. A real file and real threads."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from authserver.db import make_engine
from authserver.groupcommit import GroupCommit
from authserver.rawsql import RawConnections


@pytest.fixture
def group(tmp_path: Path) -> Iterator[GroupCommit]:
    engine = make_engine(f"sqlite:///{tmp_path / 'group.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id)"
            " DEFERRABLE INITIALLY DEFERRED, label TEXT)"
        )
    raw = RawConnections(engine, short_waits=True)
    yield GroupCommit(raw)
    raw.dispose()
    engine.dispose()


def labels(group: GroupCommit) -> list[str]:
    with group.raw.engine.connect() as connection:
        return sorted(row[0] for row in connection.exec_driver_sql("SELECT label FROM child"))


def insert(label: str, parent_id: int | None = None) -> Callable[[Any], str]:
    def job(cursor: Any) -> str:
        cursor.execute("INSERT INTO child (parent_id, label) VALUES (?, ?)", (parent_id, label))
        return label

    return job


def failing(label: str, error: BaseException) -> Callable[[Any], str]:
    def job(cursor: Any) -> str:
        insert(label)(cursor)
        raise error

    return job


def in_one_batch(group: GroupCommit, jobs: list[Callable[[Any], Any]]) -> list[Any]:
    """Run ``jobs[0]`` as the leader, holding its turn until every other job waits behind
    it; then they all go as the next batch. Each thread's result or exception, in order."""
    waiting = len(jobs) - 1
    outcomes: list[Any] = [None] * len(jobs)

    def leader_job(cursor: Any) -> Any:
        deadline = time.monotonic() + 10
        while len(group.waiting) < waiting and time.monotonic() < deadline:
            time.sleep(0.001)
        return jobs[0](cursor)

    def submit(index: int, job: Callable[[Any], Any]) -> None:
        try:
            outcomes[index] = group.run(job)
        except BaseException as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=submit, args=(0, leader_job))]
    threads[0].start()
    while not group.leading:
        time.sleep(0.001)
    for index, job in enumerate(jobs[1:], start=1):
        threads.append(threading.Thread(target=submit, args=(index, job)))
        threads[-1].start()
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive()
    return outcomes


def test_a_lone_job_is_committed_at_once(group: GroupCommit):
    assert group.run(insert("seul")) == "seul"
    assert labels(group) == ["seul"]
    assert (group.batches, group.jobs) == (1, 1)


def test_jobs_that_arrive_during_a_commit_share_the_next_transaction(group: GroupCommit):
    outcomes = in_one_batch(group, [insert(f"job{n}") for n in range(5)])
    assert outcomes == [f"job{n}" for n in range(5)]  # each thread gets its own job's value
    assert labels(group) == [f"job{n}" for n in range(5)]
    assert (group.batches, group.jobs) == (2, 5)  # the leader's batch, then the four others
    assert not group.leading and group.waiting == []


def test_a_failing_job_loses_only_its_own_writes(group: GroupCommit):
    refused = LookupError("refusé")
    outcomes = in_one_batch(
        group, [insert("avant"), insert("a"), failing("annulé", refused), insert("b")]
    )
    assert outcomes[0:2] == ["avant", "a"] and outcomes[3] == "b"
    assert outcomes[2] is refused  # raised in its own thread, not in the leader's
    assert labels(group) == ["a", "avant", "b"]


def test_a_job_that_raises_a_base_exception_still_lets_the_batch_commit(group: GroupCommit):
    outcomes = in_one_batch(group, [insert("x"), failing("y", SystemExit(3)), insert("z")])
    assert isinstance(outcomes[1], SystemExit)
    assert labels(group) == ["x", "z"]


def test_a_failed_commit_fails_every_job_of_its_batch_and_writes_nothing(group: GroupCommit):
    # The missing parent is only checked at COMMIT (a deferred foreign key): the batch's
    # statements all succeed, then its commit is refused.
    outcomes = in_one_batch(group, [insert("seul"), insert("ok"), insert("orphelin", 404)])
    assert outcomes[0] == "seul"  # the leader's own batch, before
    assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes[1:])
    assert labels(group) == ["seul"]
    assert group.run(insert("après")) == "après"  # the next batch is not affected
    assert labels(group) == ["après", "seul"]


def test_many_threads_all_get_their_own_result(group: GroupCommit):
    results: dict[int, str] = {}

    def worker(n: int) -> None:
        for i in range(20):
            results[n * 100 + i] = group.run(insert(f"{n}-{i}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {n * 100 + i: f"{n}-{i}" for n in range(6) for i in range(20)}
    assert len(labels(group)) == 120
    assert group.jobs == 120 and group.batches <= 120


def test_a_leader_always_commits_its_own_job_first(group: GroupCommit, monkeypatch):
    """More jobs waiting than a batch holds: the one that leads is in its own batch."""
    monkeypatch.setattr("authserver.groupcommit.MAX_BATCH", 2)
    outcomes = in_one_batch(group, [insert(f"j{n}") for n in range(6)])
    assert outcomes == [f"j{n}" for n in range(6)]
    assert group.jobs == 6 and group.batches >= 3
