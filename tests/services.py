"""Real services for tests: PostgreSQL, Redis, SMTP and a live WSGI server.

App-independent helpers (no pytest import). Every server binds 127.0.0.1 on a port chosen
beforehand with :func:`free_port`; each test process (pytest-xdist worker) runs its own.
"""

from __future__ import annotations

import atexit
import contextlib
import email
import email.policy
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

__all__ = [
    "LiveServer",
    "PostgresServer",
    "RedisServer",
    "SMTPServer",
    "free_port",
    "html_of",
    "text_of",
    "wait_for_port",
]


_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (tiny race window until it is bound again),
    never one this process was given before: two calls in a row once returned the same
    port, and a test's second server then failed to bind while its pages hit the first."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin_dirs() -> list[str]:
    """`/usr/lib/postgresql/<version>/bin` directories, highest version first."""
    dirs = glob.glob("/usr/lib/postgresql/*/bin")

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)

    return sorted(dirs, key=version, reverse=True)


def _pg_tool(name: str) -> str | None:
    for d in _pg_bin_dirs():
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def memory_dir(min_free: int = 4 << 30) -> str | None:
    """``/dev/shm`` when it is a writable tmpfs with room to spare, else None (the default).

    A test cluster's data directory grows to a gigabyte of per-test databases. On disk,
    deleting it at the end of a full run took 16-18 s of each worker's time, waiting on the
    page cache's writeback of files nobody will read again; in memory it takes a fraction
    of a second, and nothing is written to disk at all.
    """
    path = "/dev/shm"
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    if not os.access(path, os.W_OK) or stat.f_bavail * stat.f_frsize < min_free:
        return None
    return path


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb in a temp dir, trust auth, no durability).

    ``start()`` initialises the cluster on first use; ``stop(cleanup=False)`` keeps the data
    so a later ``start()`` (or ``restart()``) comes back on the same port with the same data.
    """

    user = "postgres"

    def __init__(
        self, port: int | None = None, startup_timeout: float = 10.0, in_memory: bool = False
    ) -> None:
        self.initdb = _pg_tool("initdb")
        self.pg_ctl = _pg_tool("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.startup_timeout = startup_timeout
        self.tmpdir: str | None = None
        self.running = False
        self._atexit = False
        self.in_memory = in_memory

    @classmethod
    def available(cls) -> bool:
        return bool(_pg_tool("initdb") and _pg_tool("pg_ctl"))

    # -- paths
    @property
    def datadir(self) -> str:
        assert self.tmpdir, "PostgresServer not started"
        return os.path.join(self.tmpdir, "data")

    @property
    def logfile(self) -> str:
        assert self.tmpdir, "PostgresServer not started"
        return os.path.join(self.tmpdir, "postgres.log")

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URL, for psycopg.connect()."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    # -- process control
    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = list(args)
        if _is_root():
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmpdir or "/",
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                + self._log_tail()
            )
        return proc

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = Path(self.logfile).read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        return "\n--- postgres.log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def _init_cluster(self) -> None:
        self.tmpdir = tempfile.mkdtemp(
            prefix="pgtest-", dir=memory_dir() if self.in_memory else None
        )
        if _is_root():
            shutil.chown(self.tmpdir, user=self.user, group=self.user)
        self._run(
            self.initdb,
            "-D",
            self.datadir,
            "-A",
            "trust",
            "-U",
            self.user,
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )

    def start(self) -> PostgresServer:
        if self.running:
            return self
        if self.tmpdir is None or not os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            self._init_cluster()
        options = " ".join(
            [
                f"-c port={self.port}",
                f"-c listen_addresses={self.host}",
                f"-c unix_socket_directories={self.tmpdir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            self.pg_ctl,
            "start",
            "-D",
            self.datadir,
            "-l",
            self.logfile,
            "-o",
            options,
            "-w",
            "-t",
            str(int(self.startup_timeout)),
        )
        self.running = True
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=1) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL on port {self.port} not ready: {exc}" + self._log_tail()
                    ) from exc
                time.sleep(0.05)

    def _postmaster_pid(self) -> int | None:
        try:
            return int(Path(self.datadir, "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError, AssertionError):
            return None

    def stop(self, cleanup: bool = True, timeout: float = 15.0) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and wait until it is really gone.

        With ``cleanup=True`` (default) the data directory is removed too.
        """
        if self.tmpdir is None:
            return
        if self.running or self._postmaster_pid():
            pid = self._postmaster_pid()
            try:
                self._run(self.pg_ctl, "stop", "-D", self.datadir, "-m", "fast", "-w")
            except RuntimeError:
                if pid:  # last resort: immediate shutdown
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + timeout
            pidfile = Path(self.datadir, "postmaster.pid")
            while pidfile.exists() or (pid and _pid_alive(pid)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL (pid {pid}) did not stop" + self._log_tail())
                time.sleep(0.05)
            self.running = False
        if cleanup:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def restart(self) -> PostgresServer:
        """Stop then start again on the same port with the same data."""
        self.stop(cleanup=False)
        return self.start()

    # -- databases
    def _admin(self):
        import psycopg

        return psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5)

    def create_database(self, name: str, template: str = "template1") -> str:
        """Create database ``name``; returns its SQLAlchemy URL."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """A throwaway redis-server (daemonized, no persistence)."""

    def __init__(self, port: int | None = None, startup_timeout: float = 10.0) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise RuntimeError("redis-server not found on PATH")
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.tmpdir: str | None = None
        self.pid: int | None = None
        self._atexit = False

    @classmethod
    def available(cls) -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server through its Unix socket (redis-py's ``unix://`` form)."""
        assert self.tmpdir, "RedisServer not started"
        return f"unix://{os.path.join(self.tmpdir, 'redis.sock')}?db=0"

    def flush(self) -> None:
        """Forget every key. The server lives as long as the test worker: a test that uses it
        starts from empty counters and ceremonies, as it does from a fresh database."""
        client = self.client()
        try:
            client.flushdb()
        finally:
            client.close()

    def client(self):
        """A client that does not retry (redis-py 6+ retries with backoff by default)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def start(self) -> RedisServer:
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="redistest-")
        pidfile = os.path.join(self.tmpdir, "redis.pid")
        subprocess.run(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                os.path.join(self.tmpdir, "redis.sock"),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--pidfile",
                pidfile,
                "--dir",
                self.tmpdir,
                "--logfile",
                os.path.join(self.tmpdir, "redis.log"),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        import redis

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                with self.client() as c:
                    c.ping()
                break
            except redis.exceptions.ConnectionError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} not ready") from exc
                time.sleep(0.02)
        try:
            self.pid = int(Path(pidfile).read_text().strip())
        except (OSError, ValueError):
            self.pid = None
        return self

    def stop(self, cleanup: bool = True, timeout: float = 10.0) -> None:
        if self.tmpdir is None:
            return
        import redis

        if self.pid and _pid_alive(self.pid):
            # SIGTERM: clean shutdown, nothing saved (--save '' --appendonly no).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        else:
            try:
                with self.client() as c:
                    c.shutdown(nosave=True)
            except redis.exceptions.RedisError:
                pass  # ConnectionError expected: the server drops us while exiting
        deadline = time.monotonic() + timeout
        while self.pid and _pid_alive(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        self.pid = None
        if cleanup:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def restart(self) -> RedisServer:
        self.stop(cleanup=False)
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- SMTP


class _CollectingHandler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        self.server._received(msg, envelope.mail_from, list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class SMTPServer:
    """A real SMTP server (aiosmtpd) that keeps every message it receives.

    ``messages`` holds parsed :class:`email.message.EmailMessage` objects, ``envelopes`` the
    matching ``(mail_from, rcpt_tos)``. ``stop()`` then ``start()`` reuses the same port.
    """

    def __init__(
        self, port: int | None = None, *, tls: Any = None, implicit_tls: bool = False
    ) -> None:
        """``tls``: an ``ssl.SSLContext`` of the server's certificate, offered by STARTTLS
        (``implicit_tls``: from the first byte, as ``smtps://``)."""
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._cond = threading.Condition()
        self._controller = None

    @property
    def url(self) -> str:
        return self.url_for(self.host)

    def url_for(self, name: str) -> str:
        """The relay's URL under another name of this machine (``localhost``, its hostname)."""
        if self.tls is not None and self.implicit_tls:
            return f"smtps://{name}:{self.port}"
        if self.tls is not None:
            return f"smtp://{name}:{self.port}?starttls=1"
        return f"smtp://{name}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def _received(self, msg: EmailMessage, mail_from: str, rcpt_tos: list[str]) -> None:
        with self._cond:
            self.messages.append(msg)
            self.envelopes.append((mail_from, rcpt_tos))
            self._cond.notify_all()

    def start(self) -> SMTPServer:
        if self._controller is not None:
            return self
        from aiosmtpd.controller import Controller

        encryption: dict[str, Any] = {}
        if self.tls is not None:
            encryption = {"ssl_context" if self.implicit_tls else "tls_context": self.tls}
        controller = Controller(
            _CollectingHandler(self),
            hostname=self.host,
            port=self.port,
            enable_SMTPUTF8=True,
            ready_timeout=10,
            **encryption,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start()`` is called again."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()
            self.envelopes.clear()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least ``count`` messages arrived; return a copy of all of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [m.get("Subject") for m in self.messages]
                    raise AssertionError(
                        f"expected at least {count} e-mail(s) on {self.url} within {timeout} s, "
                        f"got {len(self.messages)}: {subjects!r}"
                    )
                self._cond.wait(remaining)
            return list(self.messages)

    def wait_for_match(
        self, match: Callable[[EmailMessage], bool], *, start: int = 0, timeout: float = 10.0
    ) -> EmailMessage:
        """The first message from index ``start`` on that ``match``es, waiting for it: other
        e-mails still being delivered (a new-device alert of an earlier login) may arrive
        before or after it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages[start:]:
                    if match(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [m.get("Subject") for m in self.messages[start:]]
                    raise AssertionError(f"no matching e-mail within {timeout} s: {subjects!r}")
                self._cond.wait(remaining)

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        raise AssertionError(
            f"message {msg.get('Subject')!r} has no text/{subtype} part "
            f"(content type {msg.get_content_type()})"
        )
    return part.get_content()


def text_of(msg: EmailMessage) -> str:
    """The text/plain body of a message (AssertionError if there is none)."""
    return _body(msg, "plain")


def html_of(msg: EmailMessage) -> str:
    """The text/html body of a message (AssertionError if there is none)."""
    return _body(msg, "html")


# --------------------------------------------------------------------------- live WSGI server


class LiveServer:
    """Serve a WSGI app with werkzeug in a daemon thread.

    ``url`` uses ``localhost`` (not 127.0.0.1) so WebAuthn's rp id ``localhost`` works.
    """

    def __init__(self, app, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> LiveServer:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"live-server-{self.port}", daemon=True
        )
        self._thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
