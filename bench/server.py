"""The server under test: ``authserver db upgrade`` then ``authserver serve`` exactly as an
operator runs them (the ``authserver`` CLI from ``.venv/bin``, its own instance directory and
migrated SQLite database, a free port)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cpu import listening_sockets, tree_cpu_seconds, workers_cpu_seconds, workers_requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AUTHSERVER = PROJECT_ROOT / ".venv" / "bin" / "authserver"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc: subprocess.Popen[Any], timeout: float = 25.0) -> None:
    """SIGTERM (the master's graceful shutdown), wait; then kill its process group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


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
        if self.proc is not None:
            stop_server(self.proc, timeout)
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
