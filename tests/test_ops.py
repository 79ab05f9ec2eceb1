"""Operations: dependencies that hang give quick, clean 503s; readiness; the JSON access log."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from authserver import ops
from authserver.db import get_database
from authserver.webauthn.service import STORE_KEY
from tests.conftest import AppFactory, csrf_of, fresh_pg_url
from tests.services import free_port


class Blackhole:
    """A TCP server that accepts every connection and never says a word: a hung server."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    server = Blackhole()
    try:
        yield server
    finally:
        server.close()


def timed(call: Callable[[], Any], limit: float) -> tuple[Any, float]:
    """Run ``call`` in a thread; fail (instead of hanging the suite) past ``limit`` s."""
    result: list[Any] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still waiting after {limit} s: the server hangs"
    return result[0], time.monotonic() - started


def assert_clean_503(response: Any, api: bool) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 503, body[:300]
    assert "Traceback" not in body
    if api:
        assert response.get_json()["error"] == "unavailable"
    else:
        assert response.mimetype == "text/html" and 'lang="fr"' in body


# --------------------------------------------------------------------------- hung dependencies


def test_a_hung_postgresql_gives_503_within_seconds(
    make_app: AppFactory, blackhole: Blackhole, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(ops, "DATABASE_CONNECT_TIMEOUT", 2)  # libpq's minimum
    url = f"postgresql+psycopg://authserver@127.0.0.1:{blackhole.port}/authserver"
    app, _ = timed(lambda: make_app(url, AUTHSERVER_MAIL_WORKER="0"), limit=20)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200

    ready, elapsed = timed(lambda: client.get("/readyz"), limit=20)
    assert ready.status_code == 503 and ready.get_json()["checks"]["database"] == "indisponible"
    assert elapsed < 10

    options, elapsed = timed(
        lambda: client.post("/webauthn/login/options", json={"username": "martin"}), limit=20
    )
    assert_clean_503(options, api=True)
    assert elapsed < 10

    csrf = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"csrf_token": csrf, "username": "martin", "password": "x" * 12}
    page, elapsed = timed(lambda: client.post("/login", data=form), limit=20)
    assert_clean_503(page, api=False)
    assert elapsed < 10

    client.set_cookie("authserver_session", "s" * 43)
    verdict, elapsed = timed(lambda: client.get("/auth/verify"), limit=20)
    assert verdict.status_code == 503 and elapsed < 10


@pytest.mark.pg
def test_no_free_pooled_connection_gives_503_not_a_wait(
    make_app: AppFactory, postgres, pg_template
):
    app = make_app(fresh_pg_url(postgres, pg_template), AUTHSERVER_MAIL_WORKER="0")
    engine = get_database(app).engine
    assert engine.pool.timeout() == ops.POOL_TIMEOUT
    engine.pool._timeout = 0.5  # the same behaviour, sooner
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
    try:
        client = app.test_client()
        response, elapsed = timed(
            lambda: client.post("/webauthn/login/options", json={"username": "martin"}), limit=20
        )
        assert_clean_503(response, api=True)
        assert elapsed < 5
        assert client.get("/readyz").status_code == 503
    finally:
        for connection in held:
            connection.close()
    assert app.test_client().get("/readyz").status_code == 200


@pytest.mark.pg
def test_a_connection_killed_after_its_last_statement_does_not_turn_the_answer_into_a_500(
    make_app: AppFactory, postgres, pg_template, caplog: pytest.LogCaptureFixture
):
    """The database restarts between a view's last query and the end of its request."""
    url = fresh_pg_url(postgres, pg_template)
    app = make_app(url, AUTHSERVER_MAIL_WORKER="0")

    def read_then_lose_the_connection() -> str:
        session = get_database(app).scoped()
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return "lu"

    app.add_url_rule("/test-killed", "test_killed", read_then_lose_the_connection)
    client = app.test_client()
    answer = client.get("/test-killed")
    assert (answer.status_code, answer.text) == (200, "lu")
    assert "database connection lost before the end of a request" in caplog.text
    # The dead connection was dropped, not handed to the next requests.
    for _ in range(3 * get_database(app).engine.pool.size()):
        assert client.get("/readyz").status_code == 200


def test_a_hung_redis_gives_503_within_seconds(make_app: AppFactory, blackhole: Blackhole):
    app = make_app(
        AUTHSERVER_REDIS_URL=f"redis://127.0.0.1:{blackhole.port}/0", AUTHSERVER_MAIL_WORKER="0"
    )
    client = app.test_client()
    response, elapsed = timed(lambda: client.post("/webauthn/login/options", json={}), limit=40)
    assert_clean_503(response, api=True)
    # One call of ops.REDIS_TIMEOUT (2 s); redis-py's default would be 5 s per call.
    assert elapsed < 4


@pytest.mark.pg
def test_readyz_checks_the_challenge_stores_redis_too(make_app: AppFactory, redis_server):
    app = make_app(AUTHSERVER_REDIS_URL=redis_server.url, AUTHSERVER_MAIL_WORKER="0")
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["redis"] == "ok"
    # The throttle's Redis answers, the challenge store's does not.
    store = app.extensions[STORE_KEY]
    store.client = ops.redis_client(f"redis://127.0.0.1:{free_port()}/0")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"] == "indisponible"
    assert ready.get_json()["checks"]["database"] == "ok"


# --------------------------------------------------------------------------- error mapping


def _invalidated() -> DBAPIError:
    error = DBAPIError("SELECT 1", {}, Exception("server closed the connection"))
    error.connection_invalidated = True
    return error


UNAVAILABLE = {
    "pool_timeout": lambda: PoolTimeoutError("QueuePool limit reached"),
    "interface_error": lambda: InterfaceError("SELECT 1", {}, Exception("connection closed")),
    "connection_invalidated": _invalidated,
    "psycopg_operational": lambda: psycopg.OperationalError("server closed the connection"),
    "psycopg_interface": lambda: psycopg.InterfaceError("the connection is closed"),
}


@pytest.mark.parametrize("name", sorted(UNAVAILABLE))
@pytest.mark.parametrize("api", [True, False])
def test_database_unavailable_errors_are_503(app: Flask, name: str, api: bool):
    def boom() -> str:
        raise UNAVAILABLE[name]()

    path = "/api/test-outage" if api else "/test-outage"
    app.add_url_rule(path, "test_outage", boom)
    assert_clean_503(app.test_client().get(path), api=api)


def test_other_database_errors_stay_500(app: Flask):
    def boom() -> str:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    app.add_url_rule("/api/test-integrity", "test_integrity", boom)
    response = app.test_client().get("/api/test-integrity")
    assert response.status_code == 500
    assert response.get_json()["error"] == "server_error"


# --------------------------------------------------------------------------- access log


def access_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_access_log_lines(make_app: AppFactory, tmp_path: Path, monkeypatch, actions_factory):
    log = tmp_path / "access.log"
    monkeypatch.setenv("AUTHSERVER_ACCESS_LOG", str(log))
    app = make_app()
    actions = actions_factory(app)
    actions.create_active_account("lea.martin")
    assert actions.login("lea.martin").status_code == 302
    session_cookie = actions.client.get_cookie("authserver_session").value
    log.write_text("")  # only what follows

    client = actions.client
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/auth/verify", headers={"User-Agent": "nginx-auth"}).status_code == 200
    assert client.get("/activate/some-secret-link-token").status_code in (200, 400, 404, 410)
    assert client.get("/account/passkeys").status_code == 200
    anonymous = app.test_client()
    assert anonymous.get("/auth/verify").status_code == 401

    lines = access_lines(log)
    routes = [(line["method"], line["route"], line["status"]) for line in lines]
    # The probes are not logged; /auth/verify (answered before Flask) is.
    assert [r for r in routes if r[1] in ("/healthz", "/readyz")] == []
    assert ("GET", "/auth/verify", 200) in routes
    assert ("GET", "/auth/verify", 401) in routes
    assert ("GET", "/account/passkeys", 200) in routes
    assert any(r[1] == "/activate/<token>" for r in routes)
    for line in lines:
        assert set(line) == {"time", "method", "route", "status", "duration_ms", "ip", "user_agent"}
        assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
        assert line["ip"] == "127.0.0.1"
    verify = next(line for line in lines if line["route"] == "/auth/verify")
    assert verify["user_agent"] == "nginx-auth"
    text = log.read_text()
    assert session_cookie not in text
    assert "some-secret-link-token" not in text


@pytest.fixture
def actions_factory(smtp):
    from tests.conftest import Actions

    return lambda app: Actions(app.test_client(), smtp)


@pytest.mark.parametrize(
    ("ip", "user_agent"),
    [
        ("127.0.0.1", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
        (None, None),
        ("2001:db8::1", 'un "agent" \\ bizarre\u00e9\u2028\x07' + "x" * 300),
    ],
)
def test_an_access_line_is_the_json_of_its_fields(ip, user_agent):
    """Written without json.dumps (hot path): the very text json.dumps gives."""
    import io

    from authserver.accesslog import AccessLog

    stream = io.StringIO()
    AccessLog(stream).write("POST", "/webauthn/login/verify", 200, 0.0012345, ip, user_agent)
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    fields = json.loads(line)
    assert line[:-1] == json.dumps(
        {
            "time": fields["time"],
            "method": "POST",
            "route": "/webauthn/login/verify",
            "status": 200,
            "duration_ms": 1.23,
            "ip": ip,
            "user_agent": (user_agent or "")[:256],
        }
    )


def test_a_started_worker_freezes_the_loaded_app_for_the_collector(app):
    """authserver serve's post_worker_init: the app's long-lived objects leave the
    collector's generations (gc.freeze), so full collections no longer walk them."""
    import gc
    import signal
    from types import SimpleNamespace

    from authserver.serving import _worker_started

    previous = signal.getsignal(signal.SIGTERM)
    gc.unfreeze()
    try:
        _worker_started(SimpleNamespace(wsgi=app, cfg=SimpleNamespace(workers=4), age=1))
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        signal.signal(signal.SIGTERM, previous)
