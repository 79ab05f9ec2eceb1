"""Benchmark harness: a real ``authserver serve``, a keep-alive load generator, the machine.

Everything here is independent of what is measured: ``ServerProcess`` starts the production
server exactly as an operator would (the ``authserver`` CLI from ``.venv/bin``, its own
instance directory and migrated SQLite database, a free port), ``run_load`` drives it over
N concurrent keep-alive HTTP/1.1 connections, ``machine()`` describes where it ran.

The load generator is asyncio on raw sockets (one process, one thread): on a 2-core machine
the client shares the CPU with the server, so it must be cheap. Its own CPU use is measured
(``client_cpu``, in cores) and reported beside every figure, as is the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
AUTHSERVER = PROJECT_ROOT / ".venv" / "bin" / "authserver"
USER_AGENT = "authserver-bench/1 (Linux x86_64) Mozilla/5.0 Chrome/131.0"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- CPU accounting

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(p) for p in text.split())
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (Linux /proc)."""
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
        stack.extend(_children(current))
    return total


def system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores (``/proc/stat``)."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / _CLK_TCK, steal / _CLK_TCK


def _is_mail_deliverer(pid: int) -> bool:
    """The ``authserver mail deliver`` process ``authserver serve`` runs beside its workers."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"mail" in words and b"deliver" in words


def web_workers(pid: int) -> list[int]:
    """The gunicorn workers of the server ``pid`` (its mail deliverer left out), pid order."""
    return [child for child in sorted(_children(pid)) if not _is_mail_deliverer(child)]


def workers_cpu_seconds(pid: int) -> list[float]:
    """CPU seconds of each gunicorn worker of ``pid``, in pid order."""
    return [tree_cpu_seconds(child) for child in web_workers(pid)]


def workers_requests(metrics_dir: Path, pid: int) -> dict[int, int]:
    """Requests answered so far by each live worker of the server ``pid``, from the
    Prometheus multiprocess files the workers write (one ``histogram_<pid>.db`` each): the
    request-duration histogram counts every request, fast path included. Each bucket is
    stored there on its own (the collector makes them cumulative): their sum is the count."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[int, int] = {}
    for worker in web_workers(pid):
        path = metrics_dir / f"histogram_{worker}.db"
        total = 0
        with contextlib.suppress(OSError):
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
                name, sample, _labels, *_ = json.loads(key)
                if name == "authserver_request_duration_seconds" and sample.endswith("_bucket"):
                    total += int(value)
        counts[worker] = total
    return counts


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on ``port`` (IPv4), from the kernel's own table: one per
    worker when each binds its own (SO_REUSEPORT)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- the server


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """``authserver db upgrade`` then ``authserver serve`` in a fresh temporary instance."""

    def __init__(
        self,
        workers: int = 2,
        threads: int = 4,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        serve_args: Sequence[str] = (),
        engine: str = "granian",
    ) -> None:
        self.workers = workers
        self.engine = engine
        self.serve_args = tuple(serve_args)
        self.threads = threads
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.port = free_port()
        # One key for the server's whole life: a restart (stop/start) keeps cookies valid.
        self.secret_key = secrets.token_urlsafe(32)
        self.tmpdir = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
        self.instance = self.tmpdir / "instance"
        self.database_url = f"sqlite:///{self.tmpdir / 'authserver.db'}"
        self.log_path = self.tmpdir / "server.log"
        # The server's per-process metric files: read for each worker's request count.
        self.metrics_dir = self.tmpdir / "metrics"
        self.metrics_dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
        env.update(
            {
                "AUTHSERVER_HOST": "127.0.0.1",
                "AUTHSERVER_PORT": str(self.port),
                "AUTHSERVER_BASE_URL": f"http://localhost:{self.port}",
                "AUTHSERVER_DATABASE_URL": self.database_url,
                "AUTHSERVER_INSTANCE_PATH": str(self.instance),
                "AUTHSERVER_SECRET_KEY": self.secret_key,
                "AUTHSERVER_MAIL_URL": "console",
                "AUTHSERVER_SECURITY_LOG": "off",
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run ``authserver <args>`` with this server's configuration; return its stdout."""
        proc = subprocess.run(
            [str(AUTHSERVER), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.tmpdir,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise ServerError(
                f"authserver {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def migrate(self) -> None:
        self.instance.mkdir(parents=True, exist_ok=True)
        self.cli("db", "upgrade")

    def command(self) -> list[str]:
        """What :meth:`start` runs: ``authserver serve`` with these workers and threads."""
        if not AUTHSERVER.exists():
            raise ServerError(f"{AUTHSERVER} not found (run `make install`)")
        workers, threads = str(self.workers), str(self.threads)
        command = [str(AUTHSERVER), "serve", "--workers", workers, "--threads", threads]
        return [*command, "--engine", self.engine]

    def start(self, wait: bool = True) -> ServerProcess:
        """Start the server; with ``wait=False`` call :meth:`wait_healthy` later."""
        command = [*self.command(), *self.serve_args]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            command,
            env=self.env,
            cwd=self.tmpdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        # Every worker must be up: ask a few times in a row.
        ok_in_a_row = 0
        while ok_in_a_row < 3 * self.workers:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(f"authserver serve exited ({self.proc.returncode}){self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    ok_in_a_row = ok_in_a_row + 1 if response.status == 200 else 0
                continue
            except OSError:
                ok_in_a_row = 0
            if time.monotonic() > deadline:
                raise ServerError(f"no /healthz after {self.startup_timeout} s{self.tail()}")
            time.sleep(0.1)
        # Granian's workers bind their sockets once their app is loaded, after the first
        # answers: connections opened before would all go to the workers already up.
        while self.engine == "granian" and listening_sockets(self.port) < self.workers:
            if time.monotonic() > deadline:
                raise ServerError(f"not every worker listens after {self.startup_timeout} s")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def workers_cpu_seconds(self) -> list[float]:
        return workers_cpu_seconds(self.proc.pid) if self.proc else []

    def workers_requests(self) -> dict[int, int]:
        return workers_requests(self.metrics_dir, self.proc.pid) if self.proc else {}

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- server log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Lines of the server log that look like trouble (tracebacks, locks, 5xx)."""
        needles = ("Traceback", "database is locked", "Error", "CRITICAL", "WORKER TIMEOUT")
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(n in line for n in needles)][:20]

    def stop(self, timeout: float = 25.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        self.migrate()
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()


# --------------------------------------------------------------------------- HTTP client


class HTTPError(Exception):
    """A request that did not give what the benchmark expected."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def cookies(self) -> dict[str, str]:
        """``name -> value`` of every Set-Cookie (attributes ignored; empty value = deleted)."""
        jar = {}
        for key, value in self.headers:
            if key == "set-cookie":
                pair = value.split(";", 1)[0]
                name, _, cookie = pair.partition("=")
                jar[name.strip()] = cookie.strip()
        return jar


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams (reconnects when closed)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout  # per request: a stuck server never hangs the benchmark
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = -1  # the first connect is not a reconnect

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.reconnects += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        cookies: Mapping[str, str] | None = None,
    ) -> Response:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: localhost:{self.port}",
            f"User-Agent: {USER_AGENT}",
            "Accept: */*",
        ]
        if cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items() if v))
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            return await asyncio.wait_for(self._exchange(head + body, method), self.timeout)
        except (
            OSError,
            TimeoutError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            self.close()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, data: bytes, method: str) -> Response:
        if self.writer is None:
            await self._open()
        assert self.writer is not None
        self.writer.write(data)
        return await self._read_response(method)

    async def _read_response(self, method: str) -> Response:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        head = raw.decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = []
        for line in head[1:]:
            if line:
                key, _, value = line.partition(":")
                headers.append((key.strip().lower(), value.strip()))
        response = Response(status, headers, b"")
        length = response.header("content-length")
        if method == "HEAD" or status in (204, 304):
            pass
        elif length is not None:
            response.body = await self.reader.readexactly(int(length))
        elif (response.header("transfer-encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers expected
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            response.body = b"".join(chunks)
        else:  # body until close
            response.body = await self.reader.read()
            self.close()
        if (response.header("connection") or "").lower() == "close":
            self.close()
        return response


# --------------------------------------------------------------------------- load generator

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


# --------------------------------------------------------------------------- options, reports


@dataclass(frozen=True)
class Options:
    """What every benchmark module's ``run(options)`` receives."""

    quick: bool = False
    connections: int = 32
    duration: float = 10.0  # measured seconds per HTTP scenario (after a warm-up)
    max_operations: int = 1_000_000  # cap per scenario: runs are bounded by count and time
    workers: int = 2
    threads: int = 4
    engine: str = "granian"  # authserver serve --engine


@dataclass
class Report:
    """A benchmark's outcome: JSON data for bench/results/<name>.json and rows for the table."""

    name: str
    data: dict[str, Any]
    rows: list[list[Any]]


TABLE_HEADER = (
    "scenario",
    "per s",
    "p50 ms",
    "p99 ms",
    "count",
    "errors",
    "client CPU",
    "server CPU (per worker)",
    "requests per worker",
    "other CPU",
)


# Other processes using more than this (in cores) during a measurement make it noisy.
NOISY_CORES = 0.25


def summary_row(label: str, value: Any, note: str) -> list[Any]:
    """A table row under the measured ones: a figure and its verdict (or a note) in the
    « requests per worker » column, the rest blank."""
    return [label, value, "", "", "", "", "", "", note]


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as psycopg.connect() takes it."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def cpu_split(result: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """A LoadResult dict's CPU, in cores: the web workers; the rest of the server (its idle
    master and the mail deliverer beside the workers); the rest of the machine (other
    processes: an SMTP relay, PostgreSQL, Redis); this load generator."""
    workers = sum(result["worker_cpu_cores"])
    server = result["server_cpu_cores"]
    client = result["client_cpu_cores"]
    return workers, server - workers, result["machine_busy_cores"] - client - server, client


def load_row(label: str, result: Mapping[str, Any]) -> list[Any]:
    """A table row for a LoadResult dict (CPU in cores; other = rest of the machine)."""
    workers = "/".join(f"{c:.2f}" for c in result["worker_cpu_cores"])
    _, rest, other, _ = cpu_split(result)
    if rest >= 0.01:
        workers += f", mail {rest:.2f}"
    return [
        label,
        result["rate_per_s"],
        result["p50_ms"],
        result["p99_ms"],
        result["operations"],
        result["errors"],
        f"{result['client_cpu_cores']:.2f}",
        f"{result['server_cpu_cores']:.2f} ({workers})",
        "/".join(str(n) for n in result.get("worker_requests", [])),
        f"{max(0.0, other):.2f}{' !' if other > NOISY_CORES else ''}",
    ]


# --------------------------------------------------------------------------- machine, output


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mib() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_mib": _memory_mib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "packages": _versions(
            "gunicorn", "flask", "argon2-cffi", "argon2-cffi-bindings", "sqlalchemy", "werkzeug"
        ),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "git_commit": _git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain text table, numbers right-aligned; short rows (summaries) end blank."""
    cells = [[str(h) for h in header]] + [
        [f"{c:,.1f}" if isinstance(c, float) else str(c) for c in row]
        + [""] * (len(header) - len(row))
        for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            numeric = i > 0 and cell.replace(",", "").replace(".", "").replace("-", "").isdigit()
            parts.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
