"""The load generator: N concurrent keep-alive connections driving one operation, with the
latencies, statuses and the CPU of the client, the server and the rest of the machine."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.client import Connection, HTTPError, Response
from bench.cpu import self_cpu_seconds, system_cpu_seconds
from bench.server import ServerProcess

Operation = Callable[[Connection, int, int], Awaitable[None]]
"""``op(connection, client_index, iteration)``: one operation; raises HTTPError on failure."""


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 if empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LoadResult:
    name: str
    connections: int
    operations: int  # successful operations in the measured window
    errors: int
    elapsed_s: float
    rate_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    requests: int  # HTTP requests sent in the measured window (errors included)
    client_cpu_cores: float  # CPU of this (client) process / wall time
    server_cpu_cores: float  # CPU of gunicorn master + workers + mail deliverer / wall time
    worker_cpu_cores: list[float]  # each gunicorn worker's share (keep-alive balance)
    worker_requests: list[int]  # requests each worker answered in the window (same order)
    machine_busy_cores: float  # whole machine, every process (others' load shows here)
    steal_cores: float  # CPU taken by the hypervisor
    reconnects: int
    error_samples: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Counters:
    def __init__(self) -> None:
        self.requests = 0
        self.statuses: dict[str, int] = {}


async def _load(
    name: str,
    host: str,
    port: int,
    op: Operation,
    connections: int,
    duration: float,
    max_operations: int,
    warmup: float,
    min_operations: int,
    max_extension: float,
    server_cpu: Callable[[], float],
    workers_cpu: Callable[[], list[float]],
    workers_requests: Callable[[], dict[int, int]],
    counters: _Counters,
) -> LoadResult:
    """Completions are counted inside the window [end of warm-up, window end].

    The window ends at ``warmup + duration`` seconds or when ``max_operations`` operations
    completed in it, whichever comes first (if fewer than ``min_operations`` completed by
    then, it stays open until they did, at most ``max_extension`` seconds more); then no new
    operation starts and those in flight finish uncounted. CPU figures are snapshots taken
    at both ends of the window.
    """
    clock = time.perf_counter
    measure_from = clock() + warmup
    deadline = measure_from + duration
    latencies: list[float] = []
    errors: list[str] = []
    closed = asyncio.Event()
    enough = asyncio.Event()
    hard_deadline = deadline + max_extension
    marks: dict[str, Any] = {}
    conns = [Connection(host, port) for _ in range(connections)]

    def snapshot(prefix: str) -> None:
        marks[prefix + "time"] = clock()
        marks[prefix + "client"] = self_cpu_seconds()
        marks[prefix + "server"] = server_cpu()
        marks[prefix + "workers"] = workers_cpu()
        marks[prefix + "worker_requests"] = workers_requests()
        marks[prefix + "busy"], marks[prefix + "steal"] = system_cpu_seconds()
        marks[prefix + "reconnects"] = sum(c.reconnects for c in conns)
        marks[prefix + "requests"] = counters.requests
        marks[prefix + "statuses"] = dict(counters.statuses)

    async def window() -> None:
        await asyncio.sleep(max(0.0, measure_from - clock()))
        snapshot("start_")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), timeout=max(0.0, deadline - clock()))
        if not closed.is_set() and len(latencies) + len(errors) < min_operations:
            # Too few completions to say anything (a loaded machine): extend, within limits.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), timeout=max(0.0, hard_deadline - clock()))
        closed.set()
        snapshot("end_")

    async def client(index: int) -> None:
        conn = conns[index]
        iteration = 0
        while not closed.is_set():
            began = clock()
            try:
                await op(conn, index, iteration)
                failure = None
            except HTTPError as exc:
                failure = str(exc)[:300]
            iteration += 1
            done = clock()
            if closed.is_set() or done < measure_from:
                continue  # warm-up, or finished after the window closed
            if failure is None:
                latencies.append(done - began)
            else:
                errors.append(failure)
            completed = len(latencies) + len(errors)
            if completed >= max_operations:
                closed.set()
            if completed >= min_operations:
                enough.set()

    closer = asyncio.ensure_future(window())
    try:
        await asyncio.gather(*(client(i) for i in range(connections)))
        await closer
    finally:
        closer.cancel()
        for conn in conns:
            conn.close()
    elapsed = max(1e-3, marks["end_time"] - marks["start_time"])

    def cores(key: str) -> float:
        return round((marks["end_" + key] - marks["start_" + key]) / elapsed, 2)

    statuses = {
        code: count - marks["start_statuses"].get(code, 0)
        for code, count in marks["end_statuses"].items()
        if count - marks["start_statuses"].get(code, 0)
    }
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        name=name,
        connections=connections,
        operations=len(ms),
        errors=len(errors),
        elapsed_s=round(elapsed, 3),
        rate_per_s=round(len(ms) / elapsed, 1),
        p50_ms=round(percentile(ms, 0.50), 2),
        p99_ms=round(percentile(ms, 0.99), 2),
        mean_ms=round(sum(ms) / len(ms), 2) if ms else 0.0,
        max_ms=round(ms[-1], 2) if ms else 0.0,
        requests=marks["end_requests"] - marks["start_requests"],
        client_cpu_cores=cores("client"),
        server_cpu_cores=cores("server"),
        worker_cpu_cores=[
            round((after - before) / elapsed, 2)
            for before, after in zip(marks["start_workers"], marks["end_workers"], strict=False)
        ],
        worker_requests=[
            count - marks["start_worker_requests"].get(worker, 0)
            for worker, count in sorted(marks["end_worker_requests"].items())
        ],
        machine_busy_cores=cores("busy"),
        steal_cores=cores("steal"),
        reconnects=marks["end_reconnects"] - marks["start_reconnects"],
        error_samples=sorted(set(errors))[:5],
        statuses=statuses,
    )


class Load:
    """Counts requests and statuses for the operation callbacks, then runs the load."""

    def __init__(self) -> None:
        self.counters = _Counters()

    def count(self, response: Response) -> Response:
        self.counters.requests += 1
        key = str(response.status)
        self.counters.statuses[key] = self.counters.statuses.get(key, 0) + 1
        return response

    def run(
        self,
        name: str,
        server: ServerProcess,
        op: Operation,
        *,
        connections: int = 32,
        duration: float = 10.0,
        max_operations: int = 1_000_000,
        warmup: float = 1.0,
        min_operations: int = 1,
        max_extension: float = 30.0,
    ) -> LoadResult:
        """Run ``op`` in a loop on ``connections`` keep-alive connections.

        Bounded by time (``warmup`` + ``duration`` seconds, plus the operations then in
        flight) and by ``max_operations`` operations completed in the measured window,
        whichever comes first; what completes during the warm-up is not counted.
        """
        return asyncio.run(
            _load(
                name,
                "127.0.0.1",
                server.port,
                op,
                connections,
                duration,
                max_operations,
                warmup,
                min_operations,
                max_extension,
                server.cpu_seconds,
                server.workers_cpu_seconds,
                server.workers_requests,
                self.counters,
            )
        )
