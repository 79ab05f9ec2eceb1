"""``GET /auth/verify`` (forward-auth): headers for a live session, 401 otherwise, one query."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from authserver import settings_of
from authserver.config import ConfigError, load_settings
from authserver.db import get_database
from authserver.models import AuthSession, User, utcnow
from tests.conftest import csrf_of
from tests.sessions.oidc_support import certify, logged_in_actions

HEADERS = ("X-Auth-User", "X-Auth-Email", "X-Auth-Siret", "X-Auth-Certified", "X-Auth-Amr")


@pytest.fixture
def user(actions):
    return logged_in_actions(actions)


class Statements:
    def __init__(self, app) -> None:
        self.seen: list[str] = []
        self.engine = get_database(app).engine
        event.listen(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, *args) -> None:
        if not statement.startswith("PRAGMA"):
            self.seen.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


def test_without_cookie_401(client):
    answer = client.get("/auth/verify")
    assert answer.status_code == 401
    assert not any(name in answer.headers for name in HEADERS)
    assert answer.get_json()["error"] == "unauthorized"


def test_unknown_cookie_401(client):
    client.set_cookie("authserver_session", "x" * 43)
    assert client.get("/auth/verify").status_code == 401
    client.set_cookie("authserver_session", "x" * 500)
    assert client.get("/auth/verify").status_code == 401


def test_live_session_gives_the_headers(app, user):
    answer = user.client.get("/auth/verify")
    assert answer.status_code == 200
    assert answer.headers["X-Auth-User"] == "martin.dupont"
    assert answer.headers["X-Auth-Email"] == "martin.dupont@entreprise.fr"
    assert answer.headers["X-Auth-Siret"] == ""
    assert answer.headers["X-Auth-Certified"] == "false"
    assert answer.headers["X-Auth-Amr"] == "pwd"
    assert "Set-Cookie" not in answer.headers
    certify(app)
    answer = user.client.get("/auth/verify")
    assert answer.headers["X-Auth-Siret"] == "73282932000074"
    assert answer.headers["X-Auth-Certified"] == "true"


def test_one_indexed_query_and_no_write_while_fresh(app, user, monkeypatch):
    from authserver.sessions import forward_auth

    user.client.get("/auth/verify")
    reader = app.extensions[forward_auth.READER_KEY]
    lookups = []
    original = reader.lookup
    monkeypatch.setattr(reader, "lookup", lambda id_hash: lookups.append(1) or original(id_hash))
    statements = Statements(app)  # everything that goes through SQLAlchemy
    try:
        assert user.client.get("/auth/verify").status_code == 200
    finally:
        statements.close()
    assert lookups == [1] and statements.seen == []
    # The one query: the session by its primary key, joined to its user by primary key.
    with get_database(app).engine.connect() as connection:
        plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + reader.sql, (b"x" * 32,)).all()
    details = " | ".join(row[-1] for row in plan)
    assert "SCAN" not in details, details
    assert "token_hash=?" in details and "INTEGER PRIMARY KEY" in details, details


def test_last_seen_is_touched_at_most_once_a_minute(app, user):
    with get_database(app).session_scope() as session:
        session.execute(update(AuthSession).values(last_seen_at=utcnow() - timedelta(minutes=2)))
    assert user.client.get("/auth/verify").status_code == 200
    with get_database(app).session_scope() as session:
        touched = session.scalar(select(AuthSession.last_seen_at))
    assert utcnow() - touched < timedelta(seconds=5)
    # Touched a second ago: the next verdict writes nothing.
    with get_database(app).session_scope() as session:
        session.execute(update(AuthSession).values(last_seen_at=touched - timedelta(seconds=1)))
    assert user.client.get("/auth/verify").status_code == 200
    with get_database(app).session_scope() as session:
        assert session.scalar(select(AuthSession.last_seen_at)) == touched - timedelta(seconds=1)


@pytest.mark.parametrize("change", ["revoked", "expired", "idle", "locked"])
def test_dead_session_401(app, user, change):
    now = utcnow()
    with get_database(app).session_scope() as session:
        if change == "revoked":
            session.execute(update(AuthSession).values(revoked_at=now, revoked_reason="test"))
        elif change == "expired":
            session.execute(update(AuthSession).values(expires_at=now - timedelta(seconds=1)))
        elif change == "idle":
            idle = settings_of(app).session_idle
            session.execute(
                update(AuthSession).values(last_seen_at=now - timedelta(seconds=idle + 1))
            )
        else:
            session.execute(update(User).values(locked_at=now))
    assert user.client.get("/auth/verify").status_code == 401


def test_logout_401_at_once(user):
    assert user.client.get("/auth/verify").status_code == 200
    page = user.client.get("/account/sessions").get_data(as_text=True)
    user.client.post("/logout", data={"csrf_token": csrf_of(page)})
    assert user.client.get("/auth/verify").status_code == 401


def test_non_ascii_values_are_percent_encoded(app, user):
    with get_database(app).session_scope() as session:
        session.execute(update(User).values(email="émilie@entreprise.fr"))
    answer = user.client.get("/auth/verify")
    assert answer.headers["X-Auth-Email"] == "%C3%A9milie@entreprise.fr"


def test_cookie_domain_setting(make_app, smtp):
    from tests.conftest import Actions

    app = make_app(
        AUTHSERVER_BASE_URL="https://auth.portail.example",
        AUTHSERVER_COOKIE_DOMAIN="portail.example",
    )
    assert settings_of(app).cookie_domain == "portail.example"
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account()
    answer = actions.login()
    cookie = [
        h for h in answer.headers.getlist("Set-Cookie") if h.startswith("authserver_session=")
    ]
    assert len(cookie) == 1 and "Domain=portail.example" in cookie[0]


@pytest.mark.parametrize(
    "value", ["http://portail.example", "autre.example", "por tail.example", "portail..example"]
)
def test_bad_cookie_domain_is_refused_at_start(value):
    with pytest.raises(ConfigError) as raised:
        load_settings(
            {
                "AUTHSERVER_BASE_URL": "https://auth.portail.example",
                "AUTHSERVER_COOKIE_DOMAIN": value,
                "AUTHSERVER_SECRET_KEY": "x" * 32,
                "AUTHSERVER_MAIL_URL": "smtp://127.0.0.1:25",
            }
        )
    assert raised.value.variable == "AUTHSERVER_COOKIE_DOMAIN"


def test_host_only_cookie_has_no_domain(actions):
    actions.create_active_account()
    answer = actions.login()
    cookie = [
        h for h in answer.headers.getlist("Set-Cookie") if h.startswith("authserver_session=")
    ]
    assert cookie and "Domain=" not in cookie[0]


def test_other_methods_and_head(user):
    assert user.client.post("/auth/verify").status_code == 405
    head = user.client.head("/auth/verify")
    assert head.status_code == 200 and head.headers["X-Auth-User"] == "martin.dupont"
    assert head.get_data() == b""


# Header values as WSGI gives them: each byte one latin-1 character. None of these is UTF-8.
NOT_UTF8 = ["junk=\xff", "junk=\xe9", 'junk="\xff\xfe"', "\xff=\xe9", "junk=\xe9; more=\xff"]


@pytest.mark.parametrize("bad", NOT_UTF8)
def test_a_cookie_that_is_not_utf8_is_ignored(app, user, caplog, bad):
    """Another cookie with raw bytes beside the session: the verdict is the same as without it
    (it was a 503 with a traceback per request)."""
    session = f"authserver_session={user.client.get_cookie('authserver_session').value}"
    proxy = app.test_client(use_cookies=False)  # sends the header as given, byte for byte
    view = app.view_functions["forward_auth.verify"]

    def verdicts(header: str) -> list[tuple[int, str | None]]:
        fast = proxy.get("/auth/verify", environ_overrides={"HTTP_COOKIE": header})
        with app.test_request_context("/auth/verify", environ_overrides={"HTTP_COOKIE": header}):
            flask = view()
        return [(a.status_code, a.headers.get("X-Auth-User")) for a in (fast, flask)]

    with caplog.at_level(logging.INFO):
        assert verdicts(f"{bad}; {session}") == [(200, "martin.dupont")] * 2
        assert verdicts(f"{session}; {bad}") == [(200, "martin.dupont")] * 2
        assert verdicts(bad) == [(401, None)] * 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_flask_view_gives_the_same_answer(app, user):
    cookie = user.client.get_cookie("authserver_session").value
    view = app.view_functions["forward_auth.verify"]
    with app.test_request_context(
        "/auth/verify", headers={"Cookie": f"authserver_session={cookie}"}
    ):
        answer = view()
    assert answer.status_code == 200 and answer.headers["X-Auth-Amr"] == "pwd"
    with app.test_request_context("/auth/verify"):
        assert view().status_code == 401


def test_on_both_databases(backend_app, smtp):
    """The raw-driver lookup (SQLite ``?``, psycopg ``%(name)s``) and the OIDC storage."""
    from tests.conftest import Actions
    from tests.sessions.oidc_support import introspect, register, tokens

    actions = Actions(backend_app.test_client(), smtp)
    actions.create_active_account()
    assert actions.login().status_code == 302
    certify(backend_app)
    answer = actions.client.get("/auth/verify")
    assert answer.status_code == 200 and answer.headers["X-Auth-Certified"] == "true"
    kit = register(backend_app, first_party=True)
    issued = tokens(actions.client, kit)
    assert introspect(actions.client, kit, issued["access_token"])["active"] is True
    page = actions.client.get("/account/sessions").get_data(as_text=True)
    actions.client.post("/logout", data={"csrf_token": csrf_of(page)})
    assert actions.client.get("/auth/verify").status_code == 401
    assert introspect(actions.client, kit, issued["access_token"])["active"] is False


@pytest.mark.pg
def test_on_postgresql_a_check_is_one_round_trip(make_app, postgres, pg_template, smtp, tmp_path):
    """psycopg wrapped the lookup in a BEGIN and a COMMIT of its own: three round trips for
    one SELECT. It runs in autocommit now (rawsql.RawConnections), as on SQLite."""
    from psycopg.pq import Trace

    from authserver.sessions.forward_auth import READER_KEY
    from tests.conftest import Actions, fresh_pg_url

    app = make_app(fresh_pg_url(postgres, pg_template))
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account()
    assert actions.login().status_code == 302
    assert actions.client.get("/auth/verify").status_code == 200  # its connection is kept
    kept = app.extensions[READER_KEY].raw.idle
    connection = kept.get_nowait()
    kept.put_nowait(connection)
    pgconn = connection.dbapi_connection.pgconn
    trace = tmp_path / "libpq.trace"
    with trace.open("w") as out:
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        try:
            for _ in range(5):
                assert actions.client.get("/auth/verify").status_code == 200
        finally:
            pgconn.untrace()
    lines = trace.read_text().splitlines()
    sent = [line.split("\t") for line in lines if line.startswith("F\t")]  # to the server
    assert sent, "nothing traced: the check did not use the kept connection"
    messages = [fields[2].split(" ")[0] for fields in sent]
    # One round trip per statement (the lookup, and the touch when due), and nothing else
    # but psycopg preparing the lookup once it ran five times (a Parse and its Sync).
    assert messages.count("Bind") >= 5
    assert messages.count("Sync") <= messages.count("Bind") + 1
    assert "Query" not in messages, [f for f in sent if f[2].startswith("Query")]  # BEGIN…
