"""Back-channel logout: a session that ends (logout, « ce n'était pas moi », security team,
« Mes sessions ») sends a signed logout token to each service it logged in to, from a
durable outbox, with retries, without making the revoking request wait."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest
from sqlalchemy import select

from authserver.db import get_database
from authserver.models import BackchannelLogout, User
from authserver.sessions import store
from authserver.sessions.oidc import backchannel_worker_of
from authserver.sessions.oidc.backchannel import EVENT
from tests.conftest import csrf_of
from tests.sessions.oidc_support import (
    USERNAME,
    jwks,
    logged_in_actions,
    register,
    tokens,
    verify_jwt,
)


@pytest.fixture
def user(app, actions):
    backchannel_worker_of(app).retry_base = 0.2
    yield logged_in_actions(actions)
    backchannel_worker_of(app).stop()


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
    with get_database(app).session_scope() as session:
        rows = session.scalars(select(BackchannelLogout)).all()
        assert [(r.client_id, r.status, r.reason) for r in rows] == [
            (kit.client_id, "sent", "logout")
        ]


def test_revocation_by_not_me_or_security_team_notifies_too(app, user, receiver):
    service = receiver()
    kit = register(app, first_party=True, backchannel_logout_uri=service.url)
    tokens(user.client, kit)
    with app.test_request_context(), get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username == USERNAME))
        store.revoke_all(session, user_id, "not_me")
    (token,) = service.wait(1)
    assert verify_jwt(token, jwks(user.client), audience=kit.client_id)["sid"]


def test_delivery_is_retried_and_never_blocks_the_logout(app, user, receiver):
    service = receiver(failures=2, delay=0.5)
    kit = register(app, first_party=True, backchannel_logout_uri=service.url)
    tokens(user.client, kit)
    started = time.monotonic()
    _logout(user)
    assert time.monotonic() - started < 0.5  # the service's slowness is not ours
    service.wait(1, timeout=15)
    with get_database(app).session_scope() as session:
        row = session.scalar(select(BackchannelLogout))
        assert row.status == "sent" and row.attempts == 3


def test_nothing_queued_for_sessions_without_tokens(app, user, receiver):
    service = receiver()
    register(app, first_party=True, backchannel_logout_uri=service.url)
    _logout(user)
    with get_database(app).session_scope() as session:
        assert session.scalars(select(BackchannelLogout)).all() == []
