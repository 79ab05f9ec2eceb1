"""Conditional create (WebAuthn L3 `mediation: "conditional"` on create()), over HTTP.

Offered right after a password login, it lets the password manager save a passkey without a
dialog: the browser then asks the authenticator for neither presence nor verification, so
the response has UP=0 and usually UV=0. The server must accept that for a ceremony begun as
conditional, and only for one: the modal path still requires both flags, and the passkey
still needs UV at every login.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from authserver.db import get_database
from authserver.models import AuthSession, WebAuthnChallenge, utcnow
from tests.conftest import PASSWORD
from tests.webauthn.test_api import (
    OTHER,
    USER,
    assert_json_error,
    authenticator,
    new_browser,
    passkeys,
    seed_accounts,
    user_row,
)

CONDITIONAL = {"mediation": "conditional"}


@pytest.fixture
def logged_in(app, smtp):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    return browser


@pytest.mark.parametrize(
    "flags",
    [
        {"user_present": False, "user_verified": False},
        {"user_present": False, "user_verified": True},
        {"user_present": True, "user_verified": False},
        {"user_present": True, "user_verified": True},
    ],
    ids=["up0-uv0", "up0-uv1", "up1-uv0", "up1-uv1"],
)
def test_a_conditional_create_registers_without_presence_or_verification(app, logged_in, flags):
    auth = authenticator()
    options = logged_in.register_options(CONDITIONAL)
    response = logged_in.register_verify(auth.register(options, **flags))
    assert response.status_code == 200, response.get_json()
    (row,) = passkeys(app)
    assert row.credential_id == auth.credential().credential_id
    assert row.user_id == user_row(app).id


def test_conditional_options_are_the_usual_creation_options(logged_in):
    modal, conditional = logged_in.register_options(), logged_in.register_options(CONDITIONAL)
    for options in (modal, conditional):
        options.pop("challenge")
    assert conditional == modal


@pytest.mark.parametrize("body", [{}, {"mediation": None}, {"mediation": "required"}])
@pytest.mark.parametrize(
    ("flags", "error"),
    [
        ({"user_present": False, "user_verified": False}, "verification_failed"),
        ({"user_present": False}, "verification_failed"),
        ({"user_verified": False}, "user_verification_required"),
    ],
)
def test_the_modal_create_still_needs_presence_and_verification(app, logged_in, body, flags, error):
    options = logged_in.register_options(body)
    response = logged_in.register_verify(authenticator().register(options, **flags))
    assert_json_error(response, 400, error)
    assert passkeys(app) == []


def test_a_passkey_made_without_verification_still_needs_it_to_log_in(app, logged_in):
    auth = authenticator()
    options = logged_in.register_options(CONDITIONAL)
    credential = auth.register(options, user_present=False, user_verified=False)
    assert logged_in.register_verify(credential).status_code == 200
    logged_in.logout()
    response = logged_in.login(auth, user_verified=False)
    assert_json_error(response, 400, "user_verification_required")
    response = logged_in.login(auth, user_present=False)
    assert_json_error(response, 400, "verification_failed")
    assert not logged_in.logged_in()
    assert logged_in.login(auth).status_code == 200


def test_a_conditional_challenge_is_used_once(app, logged_in):
    auth = authenticator()
    credential = auth.register(logged_in.register_options(CONDITIONAL), user_present=False)
    assert logged_in.register_verify(credential).status_code == 200
    assert_json_error(logged_in.register_verify(credential), 400, "challenge_invalid")
    assert len(passkeys(app)) == 1


def test_a_conditional_challenge_belongs_to_its_account(app, smtp):
    seed_accounts(app, USER, OTHER)
    mine, theirs = new_browser(app, smtp), new_browser(app, smtp)
    mine.password_login(USER)
    theirs.password_login(OTHER)
    options = mine.register_options(CONDITIONAL)
    # Same ceremony cookie, another account: refused.
    theirs.client.set_cookie("authserver_ceremony", mine.ceremony_cookie, path="/webauthn/")
    credential = authenticator().register(options, user_present=False, user_verified=False)
    assert_json_error(theirs.register_verify(credential), 400, "challenge_invalid")
    assert passkeys(app) == []


def test_a_conditional_challenge_does_not_open_a_login(app, logged_in):
    auth = authenticator()
    logged_in.register(auth)
    creation = logged_in.register_options(CONDITIONAL)
    logged_in.logout()
    response = logged_in.login_verify(auth.assert_({"challenge": creation["challenge"]}))
    assert_json_error(response, 400, "challenge_invalid")


def test_the_purpose_fits_the_challenge_column(app, logged_in):
    """The pending ceremony's purpose is a String(16): PostgreSQL would refuse longer."""
    from authserver.webauthn.service import REGISTER_CONDITIONAL

    assert len(REGISTER_CONDITIONAL) <= WebAuthnChallenge.__table__.c.purpose.type.length


@pytest.mark.pg
def test_conditional_create_works_on_postgresql_and_redis(
    make_app, smtp, postgres, pg_template, redis_server
):
    from tests.conftest import fresh_pg_url

    redis_server.flush()  # counters left by the worker's earlier tests (sign-ups, throttles)
    for app in (
        make_app(fresh_pg_url(postgres, pg_template)),
        make_app(AUTHSERVER_REDIS_URL=redis_server.url),
    ):
        seed_accounts(app, USER)
        browser = new_browser(app, smtp)
        browser.password_login(USER)
        options = browser.register_options(CONDITIONAL)
        credential = authenticator().register(options, user_present=False, user_verified=False)
        response = browser.register_verify(credential)
        assert response.status_code == 200, response.get_json()
        # The modal ceremony, on the same store, still refuses UP=0.
        options = browser.register_options()
        response = browser.register_verify(authenticator().register(options, user_present=False))
        assert_json_error(response, 400, "verification_failed")


def test_conditional_create_is_offered_only_right_after_a_login(app, logged_in):
    with get_database(app).session_scope() as session:
        session.execute(
            update(AuthSession).values(authenticated_at=utcnow() - timedelta(minutes=6))
        )
    response = logged_in.register_options_response(CONDITIONAL)
    assert_json_error(response, 403, "recent_login_required")
    # The modal ceremony too needs a recent authentication (issue 11: a stolen cookie added
    # a passkey); after « Confirmez votre identité » it is available, the conditional one not.
    assert_json_error(logged_in.register_options_response(), 403, "reauth_required")
    confirmed = logged_in.client.post(
        "/account/reauth",
        data={"csrf_token": logged_in.csrf(), "password": PASSWORD, "next": "/account/passkeys"},
    )
    assert confirmed.status_code == 302
    assert logged_in.register_options()["challenge"]


@pytest.mark.parametrize(
    "mediation", [5, True, ["conditional"], "CONDITIONAL", "silent", "immediate", "x" * 20]
)
def test_other_mediation_values_are_refused(logged_in, mediation):
    response = logged_in.register_options_response({"mediation": mediation})
    assert_json_error(response, 400, "invalid_field")


def test_the_contract_body_still_works(logged_in):
    """`{}` → creation options, as the contract says."""
    assert logged_in.register_options({})["challenge"]
