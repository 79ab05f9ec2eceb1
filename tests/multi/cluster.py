"""Two real ``authserver serve`` instances on one PostgreSQL and one Redis, and a stdlib browser.

``Cluster`` starts what production runs: gunicorn through the ``authserver`` CLI of the
virtualenv, two workers each, every instance on its own port with the same database, Redis,
secret key and base URL, as behind a load balancer. ``Browser`` is a cookie-keeping HTTP
client on ``http.client`` (cookies are shared between the two instances' ports, as a browser
shares them between two back-ends of one site).

No pytest import here: the fixture lives in conftest.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.server import stop_server
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def _authserver() -> Path:
    """The CLI of this checkout's virtualenv, else of the running one (a git worktree)."""
    local = ROOT / ".venv" / "bin" / "authserver"
    return local if local.exists() else Path(sys.executable).parent / "authserver"


AUTHSERVER = _authserver()
PASSWORD = "multi: correct horse battery staple 42"
CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Variables of the test process that must not leak into the servers it starts.
OWN_VARIABLES = ("AUTHSERVER_", "PROMETHEUS_MULTIPROC_DIR")


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def csrf(self) -> str:
        match = CSRF_RE.search(self.text)
        assert match, f"no csrf-token meta in the page (status {self.status})"
        return match.group(1)


@dataclass
class Browser:
    """One browser: a cookie jar (name -> value, all paths) used against any instance."""

    cookies: dict[str, str] = field(default_factory=dict)
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 authserver-multi-tests"
    timeout: float = 15.0

    def request(
        self,
        instance: Instance,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        keep_cookies: bool = True,
    ) -> Reply:
        sent = {"Host": f"localhost:{instance.port}", "User-Agent": self.user_agent}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            sent.update(FORM)
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        sent.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            reply = Reply(response.status, response.getheaders(), response.read())
        finally:
            conn.close()
        if keep_cookies:
            self._store(reply)
        return reply

    def _store(self, reply: Reply) -> None:
        for key, value in reply.headers:
            if key.lower() != "set-cookie":
                continue
            pair, _, attributes = value.partition(";")
            name, _, cookie = pair.partition("=")
            name, cookie = name.strip(), cookie.strip()
            lowered = attributes.lower()
            if not cookie or "max-age=0" in lowered or "1970" in lowered:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = cookie

    def get(self, instance: Instance, path: str, **kw: Any) -> Reply:
        return self.request(instance, "GET", path, **kw)

    def post_json(self, instance: Instance, path: str, body: Any, **kw: Any) -> Reply:
        return self.request(instance, "POST", path, json_body=body, **kw)

    # -- what a person does

    def password_login(self, instance: Instance, username: str, password: str = PASSWORD) -> Reply:
        """GET /login (CSRF meta + Flask cookie) then POST /login; returns the POST's reply."""
        page = self.get(instance, "/login")
        assert page.status == 200, page.status
        return self.request(
            instance,
            "POST",
            "/login",
            form={"csrf_token": page.csrf(), "username": username, "password": password},
        )

    def page_csrf(self, instance: Instance, path: str = "/account/passkeys") -> str:
        page = self.get(instance, path)
        assert page.status == 200, (path, page.status, page.text[:300])
        return page.csrf()

    def logout(self, instance: Instance) -> Reply:
        token = self.page_csrf(instance)
        return self.request(instance, "POST", "/logout", form={"csrf_token": token})

    def register_passkey(self, instance: Instance, authenticator: Any) -> dict[str, Any]:
        """Logged in: enrol a passkey made by a SoftAuthenticator (options + verify)."""
        token = self.page_csrf(instance)
        options = self.post_json(
            instance, "/webauthn/register/options", {}, headers={"X-CSRFToken": token}
        )
        assert options.status == 200, options.text
        credential = authenticator.register(options.json())
        done = self.post_json(
            instance,
            "/webauthn/register/verify",
            {"credential": credential},
            headers={"X-CSRFToken": token},
        )
        assert done.status == 200, done.text
        return done.json()


# --------------------------------------------------------------------------- the servers


class ServerError(RuntimeError):
    pass


@dataclass
class Instance:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self, workers: int = 2, args: tuple[str, ...] = ()) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [str(AUTHSERVER), "serve", "--workers", str(workers), *args],
            env=self.env,
            cwd=self.log_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 45.0) -> None:
        """/healthz answered several times in a row (every worker booted)."""
        deadline = time.monotonic() + timeout
        in_a_row = 0
        while in_a_row < 6:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            in_a_row = in_a_row + 1 if ok else 0
            if not ok:
                if time.monotonic() > deadline:
                    raise ServerError(f"{self.name}: no /healthz after {timeout} s\n{self.tail()}")
                time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 25.0) -> None:
        if self.proc is not None:
            stop_server(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


class Cluster:
    """Instances A and B sharing one database, one Redis, one secret and one base URL."""

    def __init__(self, database_url: str, redis_url: str, mail_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.tmpdir = Path(tempfile.mkdtemp(prefix="authserver-multi-"))
        ports = [free_port(), free_port()]
        while ports[1] == ports[0]:
            ports[1] = free_port()
        origins = ",".join(f"http://localhost:{port}" for port in ports)
        self.base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)},
            "AUTHSERVER_HOST": "127.0.0.1",
            "AUTHSERVER_BASE_URL": f"http://localhost:{ports[0]}",
            "AUTHSERVER_ORIGINS": origins,
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_REDIS_URL": redis_url,
            "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(32),
            "AUTHSERVER_MAIL_URL": mail_url,
            "AUTHSERVER_MAIL_RETRY_BASE": "0.2",
            "AUTHSERVER_MAIL_RETRY_MAX": "1",
            "AUTHSERVER_SECURITY_LOG": "off",
            "AUTHSERVER_ACCESS_LOG": "off",
            # As behind a load balancer: one proxy hop whose X-Forwarded-For is trusted.
            "AUTHSERVER_TRUSTED_PROXIES": "1",
            "AUTHSERVER_INSTANCE_PATH": str(self.tmpdir / "instance"),
            "PYTHONUNBUFFERED": "1",
            # The code under test, even when the virtualenv was installed from another checkout.
            "PYTHONPATH": str(ROOT),
        }
        self.instances = [
            Instance(
                name,
                port,
                {**self.base_env, "AUTHSERVER_PORT": str(port)},
                self.tmpdir / f"{name}.log",
            )
            for name, port in zip("ab", ports, strict=True)
        ]
        self.a, self.b = self.instances

    @property
    def origin(self) -> str:
        """The base URL's origin (what a page served through the load balancer shows)."""
        return self.a.url

    def start(self) -> None:
        for instance in self.instances:
            instance.start()

    def wait_healthy(self) -> None:
        for instance in self.instances:
            instance.wait_healthy()

    def stop(self) -> None:
        for instance in self.instances:
            if instance.proc is not None and instance.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    instance.proc.send_signal(signal.SIGTERM)
        for instance in self.instances:
            instance.stop()

    def cli(self, *args: str) -> subprocess.Popen[str]:
        """Start ``authserver <args>`` with the cluster's configuration; input via communicate."""
        return subprocess.Popen(
            [str(AUTHSERVER), *args],
            env={**self.base_env, "AUTHSERVER_MAIL_WORKER": "0"},
            cwd=self.tmpdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def create_users(self, *usernames: str) -> None:
        """``authserver user create --activated --password-stdin``, all at once."""
        procs = [
            self.cli(
                "user",
                "create",
                "--username",
                name,
                "--email",
                f"{name}@multi.example.fr",
                "--activated",
                "--password-stdin",
            )
            for name in usernames
        ]
        for name, proc in zip(usernames, procs, strict=True):
            out, err = proc.communicate(PASSWORD + "\n", timeout=90)
            if proc.returncode != 0:
                raise ServerError(f"user create {name} failed: {err.strip()} {out.strip()}")

    def logs(self) -> str:
        return "\n".join(f"--- {i.name} ---\n{i.log_text()}" for i in self.instances)


def passkey_login(
    browser: Browser, begin: Instance, finish: Instance, authenticator: Any, username: str = ""
) -> Reply:
    """Options on ``begin``, the authenticator's assertion, verify on ``finish``."""
    body = {"username": username} if username else {}
    options = browser.post_json(begin, "/webauthn/login/options", body)
    assert options.status == 200, options.text
    assertion = authenticator.assert_(options.json())
    return browser.post_json(finish, "/webauthn/login/verify", {"credential": assertion})


def wait_until(predicate: Any, timeout: float, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def status_of(browser: Browser, instance: Instance, method: str, path: str, **kw: Any) -> int:
    """The status, or 0 when the connection itself failed."""
    try:
        return browser.request(instance, method, path, **kw).status
    except OSError:
        return 0
