"""« Confirmez votre identité » and what it opens (issue 11, outside security reviews).

Found: 40 wrong passwords in 3 s then the right one accepted, no event for the failures, the
same cookie kept, and a password re-authentication that made an OpenID Connect step-up
(``acr_values=urn:authserver:passkey&max_age=2``) answer ``acr=passkey``. Also: a session
older than 5 minutes (a stolen cookie) added a passkey, and a password reset left an
intruder's passkey able to log in.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
from flask import Flask
from sqlalchemy import select, update

from authserver.db import get_database
from authserver.models import AuthSession, LoginEvent, User, WebAuthnCredential, utcnow
from tests.conftest import PASSWORD, Actions, csrf_of, link_in, path_of
from tests.services import SMTPServer
from tests.sessions.oidc_support import authorize, exchange, register
from tests.staff_login import enrol_passkey, login_in, passkey_session
from tests.webauthn.test_api import assert_json_error

USERNAME = "martin.dupont"
COOKIE = "authserver_session"


def age_sessions(app: Flask, minutes: int = 10) -> None:
    """Every session's login and re-authentication older than the 5 minutes allowed."""
    past = utcnow() - timedelta(minutes=minutes)
    with get_database(app).session_scope() as session:
        session.execute(update(AuthSession).values(authenticated_at=past, reauthenticated_at=None))


def reauth(actions: Actions, password: str, next_url: str = "/account/passkeys"):
    page = actions.client.get(f"/account/reauth?next={next_url}").get_data(as_text=True)
    return actions.client.post(
        "/account/reauth",
        data={"csrf_token": csrf_of(page), "password": password, "next": next_url},
    )


def events_of(app: Flask, username: str = USERNAME) -> list[LoginEvent]:
    with get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username == username))
        return list(
            session.scalars(
                select(LoginEvent).where(LoginEvent.user_id == user_id).order_by(LoginEvent.id)
            )
        )


def session_row(app: Flask) -> AuthSession:
    with get_database(app).session_scope() as session:
        rows = list(session.scalars(select(AuthSession).where(AuthSession.revoked_at.is_(None))))
        assert len(rows) == 1
        return rows[0]


def logged_in(actions: Actions) -> Actions:
    actions.create_active_account(USERNAME)
    assert actions.login(USERNAME).status_code == 302
    return actions


# ------------------------------------------------------------------------- throttle


def test_reauth_shares_the_login_throttle_and_records_every_failure(app, actions):
    logged_in(actions)
    age_sessions(app)
    statuses = [reauth(actions, f"mauvais {n}").status_code for n in range(8)]
    # The account's limit for this browser (5 a window, like the login page), then 429.
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}
    refused = reauth(actions, PASSWORD)
    assert refused.status_code == 429, "the right password passed the throttle"
    assert int(refused.headers["Retry-After"]) > 0
    assert "Trop de tentatives" in refused.get_data(as_text=True)
    # Still no recent authentication: the sensitive action stays closed.
    assert actions.client.get("/account/delete").status_code == 302
    failures = [e for e in events_of(app) if e.outcome != "success"]
    assert [e.reason for e in failures] == ["reauth_bad_credentials"] * 5 + ["reauth_throttled"] * 4
    assert all(e.method == "password" for e in failures)


def test_reauth_failures_count_against_the_login_page_too(app, actions, client):
    logged_in(actions)
    for n in range(5):
        assert reauth(actions, f"mauvais {n}").status_code == 401
    # Same browser, same counter: the login page refuses at once.
    assert actions.login(USERNAME).status_code == 429


# ------------------------------------------------------------------ session effects


def test_reauth_rotates_the_cookie_and_keeps_the_login_facts(app, actions):
    logged_in(actions)
    age_sessions(app)
    before = session_row(app)
    old_cookie = actions.client.get_cookie(COOKIE).value
    answer = reauth(actions, PASSWORD, "/account/delete")
    assert answer.status_code == 302 and answer.headers["Location"] == "/account/delete"
    new_cookie = actions.client.get_cookie(COOKIE).value
    assert new_cookie != old_cookie
    after = session_row(app)
    assert after.id_hash == before.id_hash  # the same session (its services' tokens live on)
    assert after.token_hash != before.token_hash
    assert after.authenticated_at == before.authenticated_at  # the login's time, unchanged
    assert (after.method, after.amr) == ("password", "pwd")
    assert after.reauth_method == "password" and after.reauthenticated_at is not None
    # The old cookie value no longer opens anything.
    stale = Actions(app.test_client(), actions.smtp)
    stale.client.set_cookie(COOKIE, old_cookie)
    assert stale.client.get("/account").status_code == 302
    assert actions.client.get("/account/delete").status_code == 200
    success = events_of(app)[-1]
    assert (success.method, success.outcome, success.reason) == ("password", "success", "reauth")


def test_a_password_reauth_does_not_pass_for_a_recent_passkey_login(app, actions):
    """The reviewers' step-up: acr=passkey, amr=[hwk,user] after typing a password."""
    logged_in(actions)
    passkey_session(app, actions.client)
    client = register(app, first_party=True)
    age_sessions(app)
    assert reauth(actions, PASSWORD, "/account").status_code == 302
    flow = authorize(
        actions.client, client, acr_values="urn:authserver:passkey", max_age="2", prompt=None
    )
    assert flow.response.status_code == 302
    target = urlsplit(flow.location)
    assert target.path == "/login", flow.location  # a passkey login is asked for, no code
    assert parse_qs(target.query).get("passkey") == ["1"]


def test_a_passkey_reauth_is_a_passkey_login_again(app, actions):
    logged_in(actions)
    auth = passkey_session(app, actions.client)
    age_sessions(app)
    page = actions.client.get("/account/reauth?next=/account/delete").get_data(as_text=True)
    assert "Confirmer avec ma clé d'accès" in page
    login_in(actions.client, auth, USERNAME)
    row = session_row(app)
    assert row.method == "passkey"
    assert (utcnow() - row.authenticated_at).total_seconds() < 60
    assert actions.client.get("/account/delete").status_code == 200
    flow = authorize(
        actions.client, register(app, first_party=True), acr_values="urn:authserver:passkey"
    )
    id_token = exchange(actions.client, flow).get_json()["id_token"]
    claims = pyjwt.decode(id_token, options={"verify_signature": False})
    assert claims["acr"] == "urn:authserver:passkey"
    assert claims["amr"] == ["hwk", "user"]


# ------------------------------------------------------------------ adding a passkey


def test_adding_a_passkey_needs_a_recent_authentication(app, actions):
    """A session older than 5 minutes (a stolen cookie) registered a passkey."""
    logged_in(actions)
    age_sessions(app)
    token = csrf_of(actions.client.get("/account/passkeys").get_data(as_text=True))
    refused = actions.client.post(
        "/webauthn/register/options", json={}, headers={"X-CSRFToken": token}
    )
    assert_json_error(refused, 403, "reauth_required")
    assert reauth(actions, PASSWORD).status_code == 302
    token = csrf_of(actions.client.get("/account/passkeys").get_data(as_text=True))
    allowed = actions.client.post(
        "/webauthn/register/options", json={}, headers={"X-CSRFToken": token}
    )
    assert allowed.status_code == 200 and allowed.get_json()["challenge"]


# ------------------------------------------------------------------ recovery reviews


def passkeys_of(app: Flask) -> list[WebAuthnCredential]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(WebAuthnCredential).order_by(WebAuthnCredential.id)))


def reset_mail(smtp: SMTPServer, timeout: float = 10.0) -> EmailMessage:
    """The reset e-mail, whatever other mails (passkey added, new device) came around it."""
    deadline = time.monotonic() + timeout
    count = 1
    while True:
        found = [m for m in smtp.wait_for(count) if "Réinitialisation" in m["Subject"]]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, "no reset e-mail"
        count = len(smtp.messages) + 1
        with contextlib.suppress(AssertionError):
            smtp.wait_for(count, timeout=0.5)


def reset_password(app: Flask, smtp: SMTPServer, actions: Actions) -> None:
    page = actions.client.get("/password/forgot").get_data(as_text=True)
    actions.client.post(
        "/password/forgot", data={"csrf_token": csrf_of(page), "username": USERNAME}
    )
    message = reset_mail(smtp)
    path = path_of(link_in(message, "/password/reset/"))
    form = actions.client.get(path).get_data(as_text=True)
    done = actions.client.post(
        path,
        data={
            "csrf_token": csrf_of(form),
            "password": "un tout nouveau mot de passe 2026",
            "password_confirm": "un tout nouveau mot de passe 2026",
        },
    )
    assert done.status_code in (200, 302), done.get_data(as_text=True)[:500]


def test_a_password_reset_reviews_the_passkeys_added_since_the_last_trusted_login(
    app, smtp, actions
):
    logged_in(actions)
    owner = passkey_session(app, actions.client)  # added right after the owner's login...
    login_in(actions.client, owner)  # ...and used since, from the same browser: trusted
    # Later, an intruder in that session (a stolen cookie, freshly re-authenticated).
    assert reauth(actions, PASSWORD).status_code == 302
    intruder = enrol_passkey(app, actions.client)
    mine, theirs = passkeys_of(app)
    assert not mine.review_required and not theirs.review_required

    stranger = Actions(app.test_client(), smtp)
    reset_password(app, smtp, stranger)
    mine, theirs = passkeys_of(app)
    assert not mine.review_required
    assert theirs.review_required
    # The intruder's passkey no longer logs in; the owner's does.
    elsewhere = app.test_client()
    options = elsewhere.post("/webauthn/login/options", json={}).get_json()
    refused = elsewhere.post(
        "/webauthn/login/verify", json={"credential": intruder.assert_(options)}
    )
    assert refused.status_code in (401, 403)
    login_in(app.test_client(), owner)


def test_not_me_reviews_every_passkey(app, smtp, actions):
    logged_in(actions)
    passkey_session(app, actions.client)
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username == USERNAME))
    with app.test_request_context():
        from authserver.accounts import tokens
        from authserver.alerts.notify import NOT_ME

        with get_database(app).session_scope() as session:
            token = tokens.issue(session, purpose=NOT_ME, user_id=user.id, ttl=600)
    page = actions.client.get(f"/alerts/not-me/{token}").get_data(as_text=True)
    actions.client.post(f"/alerts/not-me/{token}", data={"csrf_token": csrf_of(page)})
    assert all(row.review_required for row in passkeys_of(app))
