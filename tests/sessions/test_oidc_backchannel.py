"""Back-channel logout: a session that ends (logout, « ce n'était pas moi », security team,
« Mes sessions ») sends a signed logout token to each service it logged in to, from a
durable outbox, with retries, without making the revoking request wait."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from datetime import timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import select

from authserver import ops
from authserver.db import Database, get_database
from authserver.models import BackchannelLogout, User, utcnow
from authserver.sessions.oidc import backchannel, backchannel_worker_of, keys
from authserver.sessions.oidc.backchannel import EVENT, BackchannelWorker
from tests.alerts.console_helpers import add_alert, add_user, client_as
from tests.conftest import Actions, csrf_of, link_in, path_of
from tests.services import text_of
from tests.sessions.oidc_support import (
    USERNAME,
    Receiver,
    introspect,
    jwks,
    logged_in_actions,
    refresh,
    register,
    tokens,
    userinfo,
    verify_jwt,
)
from tests.test_ops import Blackhole


@pytest.fixture
def user(app, actions):
    backchannel_worker_of(app).retry_base = 0.2
    yield logged_in_actions(actions)
    backchannel_worker_of(app).stop()


def settled_rows(app, timeout: float = 5.0) -> list[BackchannelLogout]:
    """The outbox once nothing is pending (the sender marks a row after the service answered)."""
    deadline = time.monotonic() + timeout
    while True:
        with get_database(app).session_scope() as session:
            rows = list(session.scalars(select(BackchannelLogout).order_by(BackchannelLogout.id)))
        if all(row.status != "pending" for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _logout(user) -> None:
    page = user.client.get("/account/sessions").get_data(as_text=True)
    assert user.client.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 302


def test_logout_sends_a_signed_logout_token(app, user, receiver):
    service = receiver()
    kit = register(app, first_party=True, backchannel_logout_uri=service.url)
    other = register(app, first_party=True, name="Sans back-channel")
    issued = tokens(user.client, kit)
    tokens(user.client, other)
    id_claims = verify_jwt(issued["id_token"], jwks(user.client), audience=kit.client_id)

    _logout(user)
    (token,) = service.wait(1)
    assert pyjwt.get_unverified_header(token)["typ"] == "logout+jwt"
    claims = verify_jwt(token, jwks(user.client), audience=kit.client_id)
    assert claims["sub"] == id_claims["sub"]
    assert claims["sid"] == id_claims["sid"]
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims and claims["jti"]
    rows = settled_rows(app)
    assert [(r.client_id, r.status, r.reason) for r in rows] == [(kit.client_id, "sent", "logout")]


# --------------------------------------------------------------------------- the real flows


def _mail_link(smtp, path: str, timeout: float = 10.0) -> str:
    """The ``path`` link of the newest mail that has one (waiting for it to arrive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in list(smtp.messages) if path in text_of(m)]
        if found:
            return path_of(link_in(found[-1], path))
        time.sleep(0.05)
    raise AssertionError(f"no mail with a {path} link")


def _password_reset(app, smtp, user) -> None:
    anonymous = app.test_client()
    page = anonymous.get("/password/forgot").get_data(as_text=True)
    anonymous.post("/password/forgot", data={"csrf_token": csrf_of(page), "username": USERNAME})
    link = _mail_link(smtp, "/password/reset/")
    form = anonymous.get(link).get_data(as_text=True)
    new = "un tout nouveau mot de passe 2026"
    answer = anonymous.post(
        link, data={"csrf_token": csrf_of(form), "password": new, "password_confirm": new}
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)


def _not_me(app, smtp, user) -> None:
    elsewhere = Actions(app.test_client(), smtp)
    assert elsewhere.login().status_code == 302  # an unknown browser: the alert mail
    link = _mail_link(smtp, "/alerts/not-me/")
    anonymous = app.test_client()
    page = anonymous.get(link).get_data(as_text=True)
    assert anonymous.post(link, data={"csrf_token": csrf_of(page)}).status_code == 200


def _security_console(app, smtp, user) -> None:
    add_user(app, "equipe.securite", role="security")
    with get_database(app).session_scope() as session:
        victim = session.scalar(select(User.id).where(User.username == USERNAME))
    alert = add_alert(app, kind="new_device", user_id=victim, ip="203.0.113.7")
    team = client_as(app, smtp, "equipe.securite")
    page = team.get(f"/security/alerts/{alert}").get_data(as_text=True)
    answer = team.post(
        f"/security/alerts/{alert}/actions/revoke_sessions",
        data={"csrf_token": csrf_of(page), "note": "Par précaution"},
    )
    assert answer.status_code == 303


def _my_sessions(which: str):
    def revoke(app, smtp, user) -> None:
        elsewhere = Actions(app.test_client(), smtp)
        assert elsewhere.login().status_code == 302
        page = elsewhere.client.get("/account/sessions").get_data(as_text=True)
        if which == "one":
            (sid,) = re.findall(r"/account/sessions/([0-9a-f]{32})/revoke", page)
            target = f"/account/sessions/{sid}/revoke"
        else:
            target = "/account/sessions/revoke-others"
        answer = elsewhere.client.post(target, data={"csrf_token": csrf_of(page)})
        assert answer.status_code == 302
        assert elsewhere.client.get("/auth/verify").status_code == 200  # its own is kept

    return revoke


FLOWS = {
    "password_reset": (_password_reset, "password_reset"),
    "not_me": (_not_me, "not_me"),
    "security_console": (_security_console, "security_console"),
    "my_sessions_one": (_my_sessions("one"), "user_revoked"),
    "my_sessions_others": (_my_sessions("others"), "user_revoked"),
}


@pytest.mark.parametrize("flow", list(FLOWS))
def test_each_way_a_session_is_ended_tells_the_services(app, smtp, user, receiver, flow):
    """Driven over HTTP as a person does it: the session's tokens stop working everywhere
    (userinfo, introspection, refresh) and the service gets a logout token for that sid."""
    service = receiver()
    kit = register(app, first_party=True, backchannel_logout_uri=service.url)
    issued = tokens(user.client, kit)
    published = jwks(user.client)
    id_claims = verify_jwt(issued["id_token"], published, audience=kit.client_id)

    act, reason = FLOWS[flow]
    act(app, smtp, user)

    assert user.client.get("/auth/verify").status_code == 401
    assert userinfo(user.client, issued["access_token"]).status_code == 401
    assert introspect(user.client, kit, issued["access_token"])["active"] is False
    assert introspect(user.client, kit, issued["refresh_token"])["active"] is False
    assert refresh(user.client, kit, issued["refresh_token"]).status_code == 400
    (token,) = service.wait(1)
    claims = verify_jwt(token, published, audience=kit.client_id)
    assert (claims["sub"], claims["sid"]) == (id_claims["sub"], id_claims["sid"])
    rows = settled_rows(app)
    assert [(r.client_id, r.reason, r.status) for r in rows] == [(kit.client_id, reason, "sent")]


def test_delivery_is_retried_and_never_blocks_the_logout(app, user, receiver):
    service = receiver(failures=2, hold=True)
    kit = register(app, first_party=True, backchannel_logout_uri=service.url)
    tokens(user.client, kit)
    _logout(user)
    # The service's slowness is not ours: the logout is over while the service still holds
    # its first answer (a logout that waited for it would only return once it was given).
    assert service.answered == 0
    service.release()
    service.wait(1, timeout=30)
    (row,) = settled_rows(app)
    assert row.status == "sent" and row.attempts == 3


def test_nothing_queued_for_sessions_without_tokens(app, user, receiver):
    service = receiver()
    register(app, first_party=True, backchannel_logout_uri=service.url)
    _logout(user)
    with get_database(app).session_scope() as session:
        assert session.scalars(select(BackchannelLogout)).all() == []


# --------------------------------------------------------------------------- exactly once


def queue_rows(database, uri: str, count: int, client_id: str = "kit-csp") -> list[str]:
    """Logouts as ``queue_logouts`` writes them (no request needed); returns their jti."""
    with database.session_scope() as session:
        rows = [
            BackchannelLogout(
                client_id=client_id, uri=uri, sub=f"sub{i}", sid=f"sid{i}", reason="test"
            )
            for i in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.jti for row in rows]


def all_rows(database) -> list[BackchannelLogout]:
    with database.session_scope() as session:
        return list(session.scalars(select(BackchannelLogout).order_by(BackchannelLogout.id)))


def received_jti(service) -> Counter[str]:
    return Counter(
        pyjwt.decode(t, options={"verify_signature": False})["jti"] for t in service.tokens
    )


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_two_workers_on_a_failing_and_slow_service_deliver_each_logout_exactly_once(
    backend_app, monkeypatch
):
    """Two senders with their own connection pools (as two processes), on SQLite and PG.

    The service takes 0.3 s per POST and refuses the first four with a 503. The lease is
    scaled down with the POSTs (1 s here; 30 s for 5 s timeouts in production): a batch
    outlives it, so each POST must renew its own row's lease, and a row taken over by the
    other worker must never be sent again by the first.
    """
    app = backend_app
    backchannel_worker_of(app).stop()  # the app's own sender stays out of it
    monkeypatch.setattr(backchannel, "LEASE", timedelta(seconds=1))
    service = Receiver(failures=4, delay=0.3)
    first = get_database(app)
    second = Database(first.url)
    settings = app.config["AUTHSERVER"]
    with first.session_scope() as session:  # one signing key, not one per racing worker
        keys.signing_key(session, settings.secret_key)
    jtis = queue_rows(first, service.url, 24)
    workers = [
        BackchannelWorker(
            database, issuer=settings.base_url, secret_key=settings.secret_key, retry_base=0.2
        )
        for database in (first, second)
    ]
    try:
        for worker in workers:
            worker.kick()
        wait_until(
            lambda: all(row.status == "sent" for row in all_rows(first)),
            timeout=60,
            what="every logout marked sent",
        )
        time.sleep(1.5)  # a worker that lost a row would send it again within a lease or two
    finally:
        for worker in workers:
            worker.stop()
        second.dispose()
        service.close()

    assert len(set(jtis)) == 24
    assert received_jti(service) == Counter(dict.fromkeys(jtis, 1))
    final = all_rows(first)
    assert all(row.claim_token is None and row.claimed_until is None for row in final)
    assert all(row.last_error is None for row in final)
    assert sum(row.attempts for row in final) == 24 + 4  # every refusal counted, once


def test_a_worker_never_releases_or_marks_a_row_another_worker_holds(app):
    backchannel_worker_of(app).stop()
    database = get_database(app)
    queue_rows(database, "http://127.0.0.1:9/backchannel-logout", 1)
    (mine,) = backchannel.claim(database, "token-a", utcnow())
    assert backchannel.claim(database, "token-b", utcnow()) == []
    outbox = backchannel.OUTBOX
    outbox.release(database, "token-b", [mine.id])
    assert outbox.renew(database, mine.id, "token-b", backchannel.LEASE) is False
    assert outbox.mark_sent(database, mine.id, "token-b") is False
    lost = outbox.record_failure(
        database, mine.id, "token-b", error="x", retry_in=lambda _: 0, give_up=lambda _: True
    )
    assert lost is None
    (row,) = all_rows(database)
    assert (row.status, row.claim_token, row.attempts) == ("pending", "token-a", 0)
    assert outbox.mark_sent(database, mine.id, "token-a") is True
    (row,) = all_rows(database)
    assert (row.status, row.claim_token, row.claimed_until) == ("sent", None, None)


def test_the_same_jti_at_every_attempt(app, receiver):
    """A retried logout is the same logout: a service can recognise a copy by its jti."""
    service = receiver(failures=2)
    worker = backchannel_worker_of(app)
    (jti,) = queue_rows(get_database(app), service.url, 1)
    worker.kick()
    service.wait(1, timeout=30)
    (row,) = settled_rows(app)
    assert (row.status, row.attempts) == ("sent", 3)
    assert received_jti(service) == Counter({jti: 1})


# --------------------------------------------------------------------------- lazy start


def test_create_app_touches_no_database_and_starts_with_it_unreachable(make_app, monkeypatch):
    """A hung PostgreSQL (accepts, never answers): the app is built at once, without one
    connection, and answers /healthz and a 503 on /readyz."""
    monkeypatch.setattr(ops, "DATABASE_CONNECT_TIMEOUT", 2)  # libpq's minimum
    hung = Blackhole()
    url = f"postgresql+psycopg://authserver@127.0.0.1:{hung.port}/authserver"
    try:
        app = make_app(url, AUTHSERVER_MAIL_WORKER="0")
        assert hung.held == []  # not one connection attempt, so no wait on the hung server
        worker = backchannel_worker_of(app)
        assert not worker.running
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
    finally:
        backchannel_worker_of(app).stop()
        hung.close()


def test_logouts_left_pending_are_sent_after_the_first_request(make_app, sqlite_template, tmp_path):
    """Rows queued by a previous run: not looked for by create_app, but by the sender's
    thread, which the process's first request starts; it ends once nothing is pending."""
    service = Receiver()
    path = tmp_path / "previous-run.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    earlier = Database(url)
    try:
        (jti,) = queue_rows(earlier, service.url, 1)
    finally:
        earlier.dispose()
    app = make_app(url)
    worker = backchannel_worker_of(app)
    try:
        assert not worker.running
        time.sleep(0.3)
        assert service.tokens == []
        assert app.test_client().get("/healthz").status_code == 200
        service.wait(1)
        assert received_jti(service) == Counter({jti: 1})
        wait_until(lambda: not worker.running, timeout=5, what="the idle sender to end")
        (row,) = settled_rows(app)
        assert row.status == "sent"
    finally:
        worker.stop()
        service.close()
