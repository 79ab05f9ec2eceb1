"""The passkey login fast path (webauthn/fastpath.py): it answers the usual login exactly as
the Flask views would, and hands everything else to them with nothing written.

Every passkey test of the suite runs through it; these tests pin down which calls it
answers itself (its ``answered`` / ``handed`` counters) and compare its answers with the
views' answers to the same requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from authserver.db import get_database
from authserver.models import (
    ActionToken,
    AuthSession,
    Device,
    LoginEvent,
    SecurityEvent,
    WebAuthnCredential,
)
from authserver.webauthn.fastpath import EXTENSION_KEY, FastLogin
from tests.services import text_of
from tests.sessions.test_forward_auth import NOT_UTF8
from tests.webauthn.test_api import (
    USER,
    Browser,
    assert_json_error,
    authenticator,
    enroll,
    new_browser,
    passkeys,
)


def fast(app: Flask) -> FastLogin:
    return app.extensions[EXTENSION_KEY]


class Counted:
    """What the fast path answered and handed over during a block."""

    def __init__(self, app: Flask) -> None:
        self.path = fast(app)

    def __enter__(self) -> Counted:
        self.answered0, self.handed0 = self.path.answered, self.path.handed
        return self

    def __exit__(self, *exc: object) -> None:
        self.answered = self.path.answered - self.answered0
        self.handed = self.path.handed - self.handed0


def rows(app: Flask, model: Any, *where: Any) -> list[Any]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(model).where(*where)))


def cookie_attributes(response: Any) -> dict[str, list[str]]:
    """Each Set-Cookie by name: its attributes, without the value and the dates."""
    found: dict[str, list[str]] = {}
    for header in response.headers.getlist("Set-Cookie"):
        name_value, *attributes = [part.strip() for part in header.split(";")]
        name, value = name_value.split("=", 1)
        kept = sorted(a for a in attributes if not a.lower().startswith("expires="))
        found[name] = [*kept, "empty" if value in ("", '""') else "value"]
    return found


def answer(response: Any) -> dict[str, Any]:
    ignored = {"Content-Length", "Set-Cookie", "Date"}
    return {
        "status": response.status_code,
        "json": response.get_json(),
        "headers": sorted((k, v) for k, v in response.headers.items() if k not in ignored),
        "cookies": cookie_attributes(response),
    }


@pytest.fixture(params=["sqlite", pytest.param("pg+redis", marks=pytest.mark.pg)])
def fast_app(request: pytest.FixtureRequest, make_app: Any) -> Flask:
    """SQLite (ceremonies in the sidecar file), and PostgreSQL with Redis."""
    if request.param == "sqlite":
        return make_app()
    from tests.conftest import fresh_pg_url

    url = fresh_pg_url(request.getfixturevalue("postgres"), request.getfixturevalue("pg_template"))
    redis = request.getfixturevalue("redis_server")
    redis.flush()  # from empty counters (20 sign-ups per hour per address)
    return make_app(url, AUTHSERVER_REDIS_URL=redis.url)


@pytest.fixture
def auth():
    return authenticator()


@pytest.fixture
def enrolled(fast_app: Flask, smtp: Any, auth: Any) -> Browser:
    """martin.dupont with a passkey, logged out, in a browser that is one of his devices."""
    return enroll(fast_app, smtp, auth)


def test_the_usual_login_is_answered_by_the_fast_path_as_the_views_answer_it(
    fast_app, enrolled, auth
):
    app = fast_app
    path = fast(app)
    assert path.enabled
    answers = []
    for enabled in (True, False):
        path.enabled = enabled
        with Counted(app) as counted:
            options = enrolled.client.post("/webauthn/login/options", json={})
            verify = enrolled.login_verify(auth.assert_(options.get_json()))
        assert verify.status_code == 200, verify.get_json()
        assert (counted.answered, counted.handed) == ((2, 0) if enabled else (0, 0))
        assert enrolled.logged_in()
        assert enrolled.client.get("/auth/verify").headers["X-Auth-User"] == USER
        answers.append((answer(options), answer(verify)))
        enrolled.logout()

    (fast_options, fast_verify), (flask_options, flask_verify) = answers
    assert fast_verify == flask_verify
    assert fast_verify["cookies"].keys() == {
        "authserver_session",
        "authserver_device",
        "authserver_flask",
    }
    for name in ("challenge",):
        fast_options["json"].pop(name)
        flask_options["json"].pop(name)
    assert fast_options == flask_options

    # Both logins left the same records.
    sessions = rows(app, AuthSession, AuthSession.method == "passkey")
    assert [(s.amr, s.revoked_reason) for s in sessions] == [("hwk user", "logout")] * 2
    assert sessions[0].device_id == sessions[1].device_id is not None
    events = rows(app, LoginEvent, LoginEvent.method == "passkey")
    assert [(e.outcome, e.device_id) for e in events] == [("success", sessions[0].device_id)] * 2
    (passkey,) = passkeys(app)
    assert passkey.sign_count == 2 and passkey.last_used_ip == "127.0.0.1"


def test_a_new_browser_for_options_gets_its_ceremony_cookie_from_the_fast_path(fast_app):
    client = fast_app.test_client()
    client.get("/healthz")  # a first request: the app's first-request hooks ran
    with Counted(fast_app) as counted:
        response = client.post("/webauthn/login/options", json={})
    assert counted.answered == 1
    assert response.status_code == 200
    cookie = cookie_attributes(response)["authserver_ceremony"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/webauthn/" in cookie
    assert response.get_json()["rpId"] == "localhost"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_an_assertion_is_accepted_once_even_concurrently(fast_app, enrolled, auth):
    app = fast_app
    device = enrolled.client.get_cookie("authserver_device").value
    for _ in range(3):
        body = {"credential": auth.assert_(enrolled.login_options())}
        clients = []
        for _ in range(2):
            client = app.test_client()
            client.set_cookie("authserver_ceremony", enrolled.ceremony_cookie, path="/webauthn/")
            client.set_cookie("authserver_device", device)
            clients.append(client)
        barrier = threading.Barrier(2)

        def verify(client: Any, barrier: threading.Barrier = barrier, body: dict = body) -> Any:
            barrier.wait(timeout=10)
            return client.post("/webauthn/login/verify", json=body)

        with Counted(app) as counted, ThreadPoolExecutor(max_workers=2) as pool:
            responses = list(pool.map(verify, clients))
        assert sorted(r.status_code for r in responses) == [200, 400]
        loser = next(r for r in responses if r.status_code == 400)
        assert loser.get_json()["error"] == "challenge_invalid"
        assert counted.answered >= 1  # the winner, at least, took the fast path
        # A replay later: refused by the view, with its failure event.
        with Counted(app) as counted:
            assert_json_error(
                clients[0].post("/webauthn/login/verify", json=body), 400, "challenge_invalid"
            )
        assert (counted.answered, counted.handed) == (0, 1)
    assert len(rows(app, AuthSession, AuthSession.method == "passkey")) == 3
    (passkey,) = passkeys(app)
    assert passkey.sign_count == 3


def _handed(app: Flask, call: Any) -> Any:
    with Counted(app) as counted:
        response = call()
    assert counted.answered == 0 and counted.handed >= 1
    return response


def test_a_new_device_is_answered_by_the_fast_path_with_its_alert(fast_app, smtp, enrolled, auth):
    """Issue 13: a new browser's login (no device cookie) is the fast path's too, its alert
    e-mail, « pas moi » link and security event written in the login's transaction."""
    app = fast_app
    laptop = new_browser(app, smtp)
    credential = auth.assert_(laptop.login_options())
    with Counted(app) as counted:
        response = laptop.login_verify(credential)
    assert (counted.answered, counted.handed) == (1, 0)
    assert response.status_code == 200
    assert "authserver_device" in cookie_attributes(response)
    assert len(rows(app, Device)) == 2
    (alert,) = rows(app, SecurityEvent, SecurityEvent.kind == "new_device")
    assert alert.details["method"] == "passkey"
    (token,) = rows(app, ActionToken, ActionToken.purpose == "not_me")
    assert token.data["device_id"] == alert.details["device_id"]
    # The mail worker was woken: the e-mail arrives without waiting for its next round.
    subject = "Nouvelle connexion à votre espace France Travail"
    deadline = time.monotonic() + 5
    while not [m for m in smtp.messages if m["Subject"] == subject]:
        assert time.monotonic() < deadline, "the alert e-mail did not arrive within 5 s"
        time.sleep(0.02)
    (message,) = [m for m in smtp.messages if m["Subject"] == subject]
    assert "/alerts/not-me/" in text_of(message)
    # The next login from that laptop is a known device: no second alert.
    laptop.logout()
    with Counted(app) as counted:
        assert laptop.login(auth).status_code == 200
    assert counted.answered == 2
    assert len(rows(app, SecurityEvent, SecurityEvent.kind == "new_device")) == 1


def test_a_forged_device_cookie_is_a_new_device(fast_app, smtp, enrolled, auth):
    laptop = new_browser(fast_app, smtp)
    laptop.client.set_cookie("authserver_device", "forged.value.here")
    with Counted(fast_app) as counted:
        assert laptop.login(auth).status_code == 200
    assert counted.answered == 2
    assert len(rows(fast_app, SecurityEvent, SecurityEvent.kind == "new_device")) == 1
    assert laptop.client.get_cookie("authserver_device").value != "forged.value.here"


def test_a_browser_with_a_session_goes_to_the_views(fast_app, smtp, auth):
    browser = enroll(fast_app, smtp, auth, log_out=False)
    options = _handed(
        fast_app, lambda: browser.client.post("/webauthn/login/options", json={"username": USER})
    )
    credential = auth.assert_(options.get_json())
    response = _handed(fast_app, lambda: browser.login_verify(credential))
    assert response.status_code == 200
    (session,) = rows(fast_app, AuthSession, AuthSession.revoked_at.is_(None))
    assert session.method == "passkey"  # re-authenticated, not a second session


@pytest.mark.parametrize(
    "body", [{"username": USER}, {"username": 42}, [], "x", {"username": "\u0000"}]
)
def test_options_it_does_not_answer(fast_app, enrolled, body):
    response = _handed(fast_app, lambda: enrolled.client.post("/webauthn/login/options", json=body))
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert response.get_json()["error"] in ("malformed_json", "invalid_field")


def test_refusals_are_the_views(fast_app, enrolled, auth):
    app = fast_app
    bad = auth.assert_(enrolled.login_options(), origin="https://evil.example")
    assert_json_error(_handed(app, lambda: enrolled.login_verify(bad)), 400, "origin_mismatch")
    unsigned = auth.assert_(enrolled.login_options(), user_verified=False)
    response = _handed(app, lambda: enrolled.login_verify(unsigned))
    assert_json_error(response, 400, "user_verification_required")
    too_long = auth.assert_(enrolled.login_options())
    response = _handed(app, lambda: enrolled.login_verify(too_long, next="/" * 2001))
    assert_json_error(response, 400, "invalid_field")
    failures = rows(app, LoginEvent, LoginEvent.outcome == "failure")
    assert [e.reason for e in failures] == ["origin_mismatch", "user_verification_required"]
    # The ceremony of the too-long "next" was not spent by the fast path: it still logs in.
    assert enrolled.login_verify(too_long).status_code == 200


def test_a_cloned_passkey_is_marked_by_the_views(fast_app, enrolled, auth):
    app = fast_app
    assert enrolled.login(auth).status_code == 200
    enrolled.logout()
    with get_database(app).session_scope() as session:
        session.execute(update(WebAuthnCredential).values(sign_count=50))
    credential = auth.assert_(enrolled.login_options())
    response = _handed(app, lambda: enrolled.login_verify(credential))
    assert_json_error(response, 401, "credential_cloned")
    (passkey,) = passkeys(app)
    assert passkey.cloned_at is not None
    assert len(rows(app, SecurityEvent, SecurityEvent.kind == "passkey_cloned")) == 1


def test_a_locked_account_is_refused_by_the_views(fast_app, enrolled, auth):
    from authserver.models import User, utcnow

    with get_database(fast_app).session_scope() as session:
        session.execute(update(User).values(locked_at=utcnow()))
    credential = auth.assert_(enrolled.login_options())
    response = _handed(fast_app, lambda: enrolled.login_verify(credential))
    assert_json_error(response, 403, "account_unavailable")
    assert not enrolled.logged_in()


def test_a_driver_error_in_the_fast_path_hands_the_login_over(
    fast_app, enrolled, auth, monkeypatch
):
    credential = auth.assert_(enrolled.login_options())
    path = fast(fast_app)

    @contextmanager
    def broken() -> Iterator[Any]:
        raise path.raw.errors("the connection went away")
        yield

    monkeypatch.setattr(path.raw, "transaction", broken)
    with Counted(fast_app) as counted:
        response = enrolled.login_verify(credential)
    assert (counted.answered, counted.handed) == (0, 1)
    # Nothing was spent by the fast path: the view logged in with the same assertion.
    assert response.status_code == 200, response.get_json()
    assert len(rows(fast_app, AuthSession, AuthSession.method == "passkey")) == 1


def test_a_failure_while_the_rows_are_written_gives_the_ceremony_back(
    fast_app, enrolled, auth, monkeypatch
):
    """The ceremony is spent before the rows are written (PostgreSQL: before the one
    statement; SQLite: in the shared transaction). When the rows are not written, the fast
    path gives the ceremony back, so the view logs in with the same assertion instead of
    refusing a ceremony spent for nothing."""
    credential = auth.assert_(enrolled.login_options())
    path = fast(fast_app)

    def broken(*_: Any) -> Any:
        raise path.raw.errors("the connection went away mid-login")

    monkeypatch.setattr(path, "_write_login", broken)
    with Counted(fast_app) as counted:
        response = enrolled.login_verify(credential)
    assert (counted.answered, counted.handed) == (0, 1)
    assert response.status_code == 200, response.get_json()
    assert len(rows(fast_app, AuthSession, AuthSession.method == "passkey")) == 1
    # Spent for good by the view's login: a replay is refused.
    enrolled.logout()
    assert_json_error(enrolled.login_verify(credential), 400, "challenge_invalid")


def test_a_counter_moved_by_a_concurrent_login_leaves_the_login_to_the_view(
    fast_app, enrolled, auth, monkeypatch
):
    """Between the fast path's read and its write, another login of the same passkey moved
    the counter: its compare-and-set changes nothing, nothing of the login is written, and
    the view, handed the request with its ceremony given back, judges the counter as it
    now stands."""
    app = fast_app
    assert enrolled.login(auth).status_code == 200  # counter 1
    enrolled.logout()
    credential = auth.assert_(enrolled.login_options())  # counter 2, read as after 1
    path = fast(app)
    check = path._check

    def check_then_move(*args: Any) -> Any:
        checked = check(*args)
        with get_database(app).session_scope() as session:
            session.execute(update(WebAuthnCredential).values(sign_count=0))
        return checked

    monkeypatch.setattr(path, "_check", check_then_move)
    sessions = len(rows(app, AuthSession, AuthSession.method == "passkey"))
    events = len(rows(app, LoginEvent))
    with Counted(app) as counted:
        response = enrolled.login_verify(credential)
    assert (counted.answered, counted.handed) == (0, 1)
    assert response.status_code == 200, response.get_json()
    # One login (the view's), not two.
    assert len(rows(app, AuthSession, AuthSession.method == "passkey")) == sessions + 1
    assert len(rows(app, LoginEvent)) == events + 1
    (passkey,) = passkeys(app)
    assert passkey.sign_count == 2


def test_behind_a_mount_point_the_redirect_is_the_views(fast_app, enrolled, auth):
    """Served under a prefix (SCRIPT_NAME, e.g. a proxy's /portail): the same redirect."""
    mounted = {"SCRIPT_NAME": "/portail"}
    redirects = []
    for enabled in (True, False):
        fast(fast_app).enabled = enabled
        options = enrolled.client.post(
            "/webauthn/login/options", json={}, environ_overrides=mounted
        ).get_json()
        response = enrolled.client.post(
            "/webauthn/login/verify",
            json={"credential": auth.assert_(options)},
            environ_overrides=mounted,
        )
        assert response.status_code == 200, response.get_json()
        redirects.append(response.get_json()["redirect"])
        enrolled.logout()
    assert redirects[0] == redirects[1]
    assert redirects[0].startswith("/portail/")


@pytest.mark.parametrize("next_url", ["//[", "//\uff03x", "/[ok]"])
def test_a_next_that_urlsplit_refuses_is_ignored_not_a_500(fast_app, enrolled, auth, next_url):
    """``urlsplit`` raises on some hosts (« //[ »): a ValueError after the fast path's commit
    left the login half done with a traceback, and the view answered 500."""
    redirects = []
    for enabled in (True, False):
        fast(fast_app).enabled = enabled
        response = enrolled.login_verify(auth.assert_(enrolled.login_options()), next=next_url)
        assert response.status_code == 200, response.get_json()
        redirects.append(response.get_json()["redirect"])
        enrolled.logout()
    assert redirects[0] == redirects[1]
    if next_url == "/[ok]":
        assert redirects[0] == next_url
    else:  # where a login without « next » goes
        assert redirects[0].startswith("/") and not redirects[0].startswith("//")


ONBOARDING = {
    "no establishment": (None, False, False),
    "waiting for the administrator": ("pending", False, False),
    "refused": ("refused", False, False),
    "member, not certified": ("active", False, False),
    "member, certification asked": ("active", True, False),
    "member, certified": ("active", False, True),
}


@pytest.mark.parametrize("state", list(ONBOARDING))
def test_each_onboarding_step_is_where_the_views_send_the_employer(fast_app, enrolled, auth, state):
    """The fast path reads the onboarding state in its one statement: the same target."""
    from authserver.models import CertificationRequest, Establishment, Membership, User, utcnow

    status, asked, certified = ONBOARDING[state]
    with get_database(fast_app).session_scope() as session:
        user = session.scalars(select(User)).one()
        assert user.role == "employer"
        if status is not None:
            place = Establishment(siret="73282932000074", siren="732829320", name="Boulangerie")
            session.add(place)
            session.flush()
            session.add(Membership(user_id=user.id, establishment_id=place.id, status=status))
        if asked:
            session.add(CertificationRequest(user_id=user.id, method="counselor"))
        if certified:
            user.certified_at = utcnow()
    redirects = []
    for enabled in (True, False):
        fast(fast_app).enabled = enabled
        with Counted(fast_app) as counted:
            response = enrolled.login_verify(auth.assert_(enrolled.login_options()))
        assert response.status_code == 200, response.get_json()
        assert counted.answered == (2 if enabled else 0)
        redirects.append(response.get_json()["redirect"])
        enrolled.logout()
    assert redirects[0] == redirects[1]


@pytest.mark.parametrize(
    ("role", "tool"),
    [("counselor", "/counselor"), ("security", "/security"), ("admin", "/staff")],
)
def test_staff_land_on_their_tool_whichever_answers(fast_app, enrolled, auth, role, tool):
    """Issue 12: staff landed on the employer espace. The fast path asks the views' rule
    (sessions/landing.py) with the role it reads: the same tool, answered by itself."""
    from authserver.models import User

    with get_database(fast_app).session_scope() as session:
        session.execute(update(User).values(role=role))
    redirects = []
    for enabled in (True, False):
        fast(fast_app).enabled = enabled
        with Counted(fast_app) as counted:
            response = enrolled.login_verify(auth.assert_(enrolled.login_options()))
        assert response.status_code == 200, response.get_json()
        assert counted.answered == (2 if enabled else 0)
        redirects.append(response.get_json()["redirect"])
        assert enrolled.client.get(tool).status_code == 200  # a passkey session: the tool opens
        enrolled.logout()
    assert redirects == [tool, tool]


def test_a_username_first_login_is_verified_by_the_views(fast_app, enrolled, auth):
    """Its ceremony names the user: the fast path, which checks and spends only discoverable
    ones, hands the verify over unspent, and the view logs in."""
    options = _handed(
        fast_app, lambda: enrolled.client.post("/webauthn/login/options", json={"username": USER})
    )
    credential = auth.assert_(options.get_json())
    response = _handed(fast_app, lambda: enrolled.login_verify(credential))
    assert response.status_code == 200, response.get_json()
    assert enrolled.logged_in()
    (event,) = rows(fast_app, LoginEvent, LoginEvent.method == "passkey")
    assert event.outcome == "success"


def test_the_fast_path_logs_to_its_own_apps_security_log(make_app, smtp, tmp_path):
    """It runs outside any app context: its line still goes where its app's settings say,
    not to the app configured last in the process."""
    import json

    target = tmp_path / "security.jsonl"
    app = make_app(AUTHSERVER_SECURITY_LOG=str(target))
    auth = authenticator()
    browser = enroll(app, smtp, auth)
    make_app(AUTHSERVER_SECURITY_LOG="off")  # configured last
    with Counted(app) as counted:
        assert browser.login(auth).status_code == 200
    assert counted.answered == 2
    logins = [json.loads(line) for line in target.read_text().splitlines()]
    last = [e for e in logins if e["event"]["action"] == "login"][-1]
    assert (last["user"]["name"], last["authserver"]["method"], last["event"]["outcome"]) == (
        USER,
        "passkey",
        "success",
    )


def test_with_the_security_log_off_no_line_is_built(make_app, smtp, monkeypatch):
    from authserver.alerts import events
    from authserver.alerts.security_log import _router as security_router

    app = make_app(AUTHSERVER_SECURITY_LOG="off")
    auth = authenticator()
    browser = enroll(app, smtp, auth)
    logger = events.security_log
    # Nobody else listens (pytest's log capture may have joined the router).
    monkeypatch.setattr(logger, "handlers", [h for h in logger.handlers if h is security_router])
    written: list[Any] = []
    monkeypatch.setattr(logger, "info", lambda *a, **k: written.append(a))
    with Counted(app) as counted:
        assert browser.login(auth).status_code == 200
    assert counted.answered == 2
    assert written == []


@pytest.mark.parametrize(
    "header",
    [
        "",
        "authserver_ceremony=abc-_; authserver_device=x.y.z",
        " a = 1 ;b=2;a=3",
        "a=1; b",
        "=b; c=d",
        'a="q\\"x"; b=2',
        "a=b=c",
        "a=1 2",
        "a=%20x",
        "\u00e9=1".encode().decode("latin-1"),  # as WSGI gives a UTF-8 header
        *NOT_UTF8,
        *(f"{bad}; authserver_session=abc; {bad}" for bad in NOT_UTF8),
    ],
)
def test_cookies_are_read_as_flask_reads_them(header):
    """The fast paths and the views they hand over to see the same cookies (first of a name
    wins), whatever bytes the header carries."""
    from werkzeug.wrappers import Request

    from authserver.web import read_cookies

    assert read_cookies(header) == dict(Request({"HTTP_COOKIE": header}).cookies.items())


LOGGER = "authserver.webauthn.fastpath"


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


class RawCookie:
    """In front of the app: one more cookie in every request's header, raw bytes as WSGI
    gives them (the test client would quote it), as a browser carrying it would send it."""

    def __init__(self, wsgi_app: Any, cookie: str) -> None:
        self.wsgi_app = wsgi_app
        self.cookie = cookie

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_COOKIE")
        environ["HTTP_COOKIE"] = f"{self.cookie}; {header}" if header else self.cookie
        return self.wsgi_app(environ, start_response)


@pytest.mark.parametrize("bad", NOT_UTF8)
def test_a_cookie_that_is_not_utf8_changes_nothing_and_logs_nothing(
    fast_app, enrolled, auth, caplog, monkeypatch, bad
):
    """It was a traceback per login (the cookie reader raised; the views answered)."""
    monkeypatch.setattr(fast_app, "wsgi_app", RawCookie(fast_app.wsgi_app, bad))
    with caplog.at_level(logging.INFO), Counted(fast_app) as counted:
        assert enrolled.login(auth).status_code == 200
    assert (counted.answered, counted.handed) == (2, 0)
    assert enrolled.logged_in()
    assert problems(caplog) == []


def test_an_unexpected_failure_logs_one_traceback_a_minute(fast_app, enrolled, caplog):
    """A bug hit by every call: the views answer each, the log gets one traceback a minute
    (the calls in between counted), and one line when the fast path works again."""
    path = fast(fast_app)
    now = [1000.0]
    path.failures.clock = lambda: now[0]
    working = path._response

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    def options() -> None:
        with Counted(fast_app) as counted:
            response = enrolled.client.post("/webauthn/login/options", json={})
        assert response.status_code == 200
        assert counted.answered + counted.handed == 1

    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(10):  # failing and working by turns, within the minute
            path._response = broken  # type: ignore[method-assign]
            options()
            path._response = working  # type: ignore[method-assign]
            options()
        # The first failure's traceback, and one line when the path worked again.
        traceback, back = problems(caplog)
        assert traceback.exc_info is not None and back.exc_info is None
        now[0] += 59
        path._response = broken  # type: ignore[method-assign]
        options()
        assert len(problems(caplog)) == 2
        now[0] += 1
        options()
        traceback = problems(caplog)[-1]
        assert traceback.exc_info is not None and "10 more" in traceback.getMessage()
        path._response = working  # type: ignore[method-assign]
        options()
        options()
    assert len(problems(caplog)) == 4
    back = problems(caplog)[-1]
    assert back.exc_info is None
    assert back.getMessage() == "passkey login fast path answering again after 11 failed call(s)"
