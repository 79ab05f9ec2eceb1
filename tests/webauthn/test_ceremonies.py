"""Every relying-party check of a passkey ceremony, shown over HTTP with real signatures.

The ones py_webauthn leaves to us come first (single use of the challenge, even under two
concurrent verifies; the browser binding; crossOrigin/topOrigin; userHandle binding; clones),
then the ones it does for us but that must reach the client as the contract's JSON errors.
At the end, unit tests of the protocol modules (client_data.py, authentication.py).
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, func, select, update
from webauthn.helpers import base64url_to_bytes

from authserver.db import get_database
from authserver.models import (
    AuthSession,
    LoginEvent,
    SecurityEvent,
    User,
    WebAuthnCredential,
    utcnow,
)
from authserver.webauthn import authentication, client_data, service
from authserver.webauthn.errors import (
    BackupEligibilityChanged,
    CloneDetected,
    CrossOriginRefused,
    MalformedCredential,
    OriginMismatch,
    UserHandleMismatch,
    UserVerificationRequired,
    VerificationFailed,
)
from authserver.webauthn.rp import RelyingParty
from tests.softauthn import SoftAuthenticator, b64url, cbor_encode
from tests.webauthn.test_api import (
    ORIGIN,
    OTHER,
    RP_ID,
    USER,
    Browser,
    assert_json_error,
    authenticator,
    create_accounts,
    enroll,
    new_browser,
    passkeys,
    seed_accounts,
    user_row,
)


@pytest.fixture
def auth() -> SoftAuthenticator:
    return authenticator()


@pytest.fixture
def enrolled(app: Flask, smtp, auth: SoftAuthenticator) -> Browser:
    """martin.dupont with one passkey on ``auth``, logged out."""
    return enroll(app, smtp, auth)


@pytest.fixture
def two_users(app: Flask, smtp) -> tuple[Browser, SoftAuthenticator, Browser, SoftAuthenticator]:
    """martin.dupont and claire.martin, one passkey each, both logged out."""
    create_accounts(app, smtp, USER, OTHER)
    mine, theirs = authenticator(), authenticator()
    return (
        enroll(app, smtp, mine, USER, create=False),
        mine,
        enroll(app, smtp, theirs, OTHER, create=False),
        theirs,
    )


def rows(app: Flask, model: Any, *where: Any) -> list[Any]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(model).where(*where)))


def count(app: Flask, model: Any, *where: Any) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def the_passkey(app: Flask) -> WebAuthnCredential:
    (row,) = passkeys(app)
    return row


def expire_challenges(app: Flask) -> None:
    with app.app_context():
        service.store().expire_all()
        get_database(app).scoped().commit()


def pending_ceremonies(app: Flask) -> int:
    with app.app_context():
        return service.store().pending_count()


def refused(response: Any, status: int, error: str) -> None:
    assert_json_error(response, status, error)
    assert "authserver_session=" not in " ".join(response.headers.getlist("Set-Cookie"))


# --------------------------------------------------------------------------- successful logins


def test_usernameless_login_opens_the_same_session_as_a_password_login(app, enrolled, auth):
    user = user_row(app)
    response = enrolled.login(auth)

    assert response.status_code == 200, response.get_json()
    redirect = response.get_json()["redirect"]
    assert redirect.startswith("/") and not redirect.startswith("//")
    cookies = " ".join(response.headers.getlist("Set-Cookie"))
    assert "authserver_session=" in cookies and "HttpOnly" in cookies
    assert enrolled.logged_in()
    espace = enrolled.client.get("/espace")
    assert espace.status_code in (200, 302)
    assert "/login" not in espace.headers.get("Location", "")

    (session,) = rows(app, AuthSession, AuthSession.method == "passkey")
    assert session.user_id == user.id
    assert session.amr == "hwk user"
    assert session.revoked_at is None
    (event,) = rows(app, LoginEvent, LoginEvent.method == "passkey")
    assert (event.user_id, event.outcome) == (user.id, "success")
    row = the_passkey(app)
    assert row.sign_count == 1
    assert row.last_used_ip == "127.0.0.1"
    assert abs((utcnow() - row.last_used_at).total_seconds()) < 60


def test_username_first_login(app, enrolled, auth):
    options = enrolled.login_options(USER)
    assert [d["id"] for d in options["allowCredentials"]] == [auth.credential().id_b64]
    response = enrolled.login_verify(auth.assert_(options))
    assert response.status_code == 200, response.get_json()
    assert enrolled.logged_in()
    # Without a userHandle too: the account was named first (WebAuthn L3 §7.2 step 6).
    enrolled.logout()
    response = enrolled.login_verify(auth.assert_(enrolled.login_options(USER), user_handle=None))
    assert response.status_code == 200, response.get_json()


def test_next_is_followed_only_when_local(enrolled, auth):
    response = enrolled.login(auth)
    assert response.status_code == 200
    enrolled.logout()
    options = enrolled.login_options()
    response = enrolled.login_verify(auth.assert_(options), next="/account/passkeys")
    assert response.get_json() == {"redirect": "/account/passkeys"}
    enrolled.logout()
    options = enrolled.login_options()
    response = enrolled.login_verify(auth.assert_(options), next="https://evil.example/")
    assert "evil" not in response.get_json()["redirect"]


def test_a_passkey_login_over_a_password_session_reauthenticates_it(app, enrolled, auth):
    """Same user, same browser: the session lives on (its services' tokens with it), now
    proven by the passkey, under a new cookie value (no fixation after the step-up)."""
    enrolled.password_login(USER)
    before = enrolled.client.get_cookie("authserver_session").value
    assert enrolled.login(auth).status_code == 200
    after = enrolled.client.get_cookie("authserver_session").value
    assert after != before
    (live,) = rows(app, AuthSession, AuthSession.revoked_at.is_(None))
    assert live.method == "passkey" and live.amr == "hwk user"
    assert live.id_hash == hashlib.sha256(before.encode()).digest()  # the same session
    assert live.token_hash == hashlib.sha256(after.encode()).digest()
    # The old cookie value no longer opens anything.
    stale = app.test_client()
    stale.set_cookie("authserver_session", before)
    assert stale.get("/account/passkeys").status_code == 302
    assert enrolled.logged_in()


def test_another_users_session_in_the_browser_is_replaced(app, two_users):
    mine, _my_auth, _theirs, their_auth = two_users
    mine.password_login(USER)
    # claire.martin's passkey, in martin.dupont's logged-in browser.
    assert mine.login(their_auth).status_code == 200
    replaced = rows(app, AuthSession, AuthSession.revoked_reason == "replaced")
    assert [s.method for s in replaced] == ["password"]
    assert count(app, AuthSession, AuthSession.revoked_at.is_(None)) == 1


# --------------------------------------------------------------------------- the challenge


def test_an_assertion_is_accepted_once(app, enrolled, auth):
    credential = auth.assert_(enrolled.login_options())
    assert enrolled.login_verify(credential).status_code == 200
    enrolled.logout()
    refused(enrolled.login_verify(credential), 400, "challenge_invalid")
    assert not enrolled.logged_in()
    failures = rows(app, LoginEvent, LoginEvent.outcome == "failure")
    assert [(e.method, e.reason) for e in failures] == [("passkey", "challenge_invalid")]
    assert pending_ceremonies(app) == 0


def _second_browser(app: Flask, first: Browser) -> Any:
    """Another test client carrying the same ceremony cookie (the same browser, twice)."""
    client = app.test_client()
    client.set_cookie("authserver_ceremony", first.ceremony_cookie, path="/webauthn/")
    return client


def test_an_assertion_verified_twice_concurrently_opens_one_session(backend_app, smtp):
    app = backend_app
    auth = authenticator()
    browser = enroll(app, smtp, auth, seed=True)
    rounds = 4
    for _ in range(rounds):
        body = {"credential": auth.assert_(browser.login_options())}
        clients = [app.test_client(), _second_browser(app, browser)]
        clients[0].set_cookie("authserver_ceremony", browser.ceremony_cookie, path="/webauthn/")
        barrier = threading.Barrier(2)

        def verify(client: Any, barrier: threading.Barrier = barrier, body: dict = body) -> Any:
            barrier.wait(timeout=10)
            return client.post("/webauthn/login/verify", json=body)

        with ThreadPoolExecutor(max_workers=2) as pool:
            responses = list(pool.map(verify, clients))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 400], [r.get_data(as_text=True) for r in responses]
        loser = next(r for r in responses if r.status_code == 400)
        assert loser.get_json()["error"] == "challenge_invalid"

    assert count(app, AuthSession, AuthSession.method == "passkey") == rounds
    assert count(
        app, LoginEvent, LoginEvent.method == "passkey", LoginEvent.outcome == "success"
    ) == (rounds)
    assert the_passkey(app).sign_count == rounds


def test_an_expired_challenge_is_refused(app, enrolled, auth):
    options = enrolled.login_options()
    expire_challenges(app)
    refused(enrolled.login_verify(auth.assert_(options)), 400, "challenge_invalid")


def test_an_expired_registration_challenge_is_refused(app, smtp, auth):
    create_accounts(app, smtp, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    options = browser.register_options()
    expire_challenges(app)
    assert_json_error(browser.register_verify(auth.register(options)), 400, "challenge_invalid")
    assert passkeys(app) == []


def test_a_challenge_only_completes_in_the_browser_that_asked_for_it(app, smtp, enrolled, auth):
    # No ceremony cookie at all.
    credential = auth.assert_(enrolled.login_options())
    stranger = new_browser(app, smtp)
    refused(stranger.login_verify(credential), 400, "challenge_invalid")
    assert not stranger.logged_in()
    # Another browser with its own ceremony running.
    credential = auth.assert_(enrolled.login_options())
    stranger.login_options()
    assert stranger.ceremony_cookie and stranger.ceremony_cookie != enrolled.ceremony_cookie
    refused(stranger.login_verify(credential), 400, "challenge_invalid")
    # A forged cookie.
    credential = auth.assert_(enrolled.login_options())
    forger = app.test_client()
    forger.set_cookie("authserver_ceremony", "x" * 43, path="/webauthn/")
    refused(
        forger.post("/webauthn/login/verify", json={"credential": credential}),
        400,
        "challenge_invalid",
    )
    # The right browser still logs in with a fresh ceremony.
    assert enrolled.login(auth).status_code == 200


def test_a_registration_challenge_belongs_to_its_account(app, smtp):
    create_accounts(app, smtp, USER, OTHER)
    mine, theirs = new_browser(app, smtp), new_browser(app, smtp)
    mine.password_login(USER)
    theirs.password_login(OTHER)
    options = mine.register_options()
    # Same browser cookie, another account: still refused.
    theirs.client.set_cookie("authserver_ceremony", mine.ceremony_cookie, path="/webauthn/")
    response = theirs.register_verify(authenticator().register(options))
    assert_json_error(response, 400, "challenge_invalid")
    assert passkeys(app) == []


def test_challenges_do_not_cross_ceremonies(app, smtp, auth):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    # A login challenge in a registration.
    login_options = browser.login_options()
    forged = auth.register(browser.register_options(), challenge=login_options["challenge"])
    assert_json_error(browser.register_verify(forged), 400, "challenge_invalid")
    # A registration challenge in a login.
    browser.register(auth)
    creation = browser.register_options()
    browser.logout()
    credential = auth.assert_({"challenge": creation["challenge"]})
    refused(browser.login_verify(credential), 400, "challenge_invalid")
    assert browser.login(auth).status_code == 200


def test_a_registration_response_is_accepted_once(app, smtp, auth):
    create_accounts(app, smtp, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    credential = auth.register(browser.register_options())
    assert browser.register_verify(credential).status_code == 200
    assert_json_error(browser.register_verify(credential), 400, "challenge_invalid")
    assert len(passkeys(app)) == 1


def test_a_lost_race_on_the_unique_credential_id_still_spends_the_ceremony(
    app, smtp, auth, monkeypatch
):
    create_accounts(app, smtp, USER, OTHER)
    enroll(app, smtp, auth, USER, create=False)
    taken = auth.credential().credential_id
    other = new_browser(app, smtp)
    other.password_login(OTHER)
    credential = authenticator().register(other.register_options(), credential_id=taken)
    # As if the first account's registration committed between our check and our insert.
    monkeypatch.setattr(service.credentials, "by_credential_id", lambda *_: None)
    assert_json_error(other.register_verify(credential), 409, "already_registered")
    assert_json_error(other.register_verify(credential), 400, "challenge_invalid")
    assert len(passkeys(app)) == 1


# --------------------------------------------------------------------------- client data


BAD_ORIGINS = [
    "https://evil.example",
    "https://localhost:5000",
    "http://localhost:5001",
    "http://localhost",
    "http://sub.localhost:5000",
    "http://localhost:5000/",
    "null",
]


@pytest.mark.parametrize("origin", BAD_ORIGINS)
def test_login_from_another_origin_is_refused(enrolled, auth, origin):
    response = enrolled.login_verify(auth.assert_(enrolled.login_options(), origin=origin))
    refused(response, 400, "origin_mismatch")


@pytest.mark.parametrize("origin", BAD_ORIGINS[:3])
def test_registration_from_another_origin_is_refused(app, smtp, auth, origin):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    response = browser.register_verify(auth.register(browser.register_options(), origin=origin))
    assert_json_error(response, 400, "origin_mismatch")
    assert passkeys(app) == []


def test_other_allowed_origins_are_configurable(make_app, smtp):
    app = make_app(AUTHSERVER_ORIGINS="http://localhost:5000,https://pro.localhost")
    auth = authenticator()
    browser = enroll(app, smtp, auth, seed=True)
    options = browser.login_options()
    response = browser.login_verify(auth.assert_(options, origin="https://pro.localhost"))
    assert response.status_code == 200, response.get_json()


def test_login_in_a_cross_origin_frame_is_refused(enrolled, auth):
    response = enrolled.login_verify(auth.assert_(enrolled.login_options(), cross_origin=True))
    refused(response, 400, "cross_origin")


def test_registration_in_a_cross_origin_frame_is_refused(app, smtp, auth):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    response = browser.register_verify(auth.register(browser.register_options(), cross_origin=True))
    assert_json_error(response, 400, "cross_origin")
    assert passkeys(app) == []


# crossOrigin is a boolean: only false (or absent) is same-origin. Anything else is refused,
# never read as false (a "true" string used to pass).
NOT_FALSE = ["true", "false", 1, 0, None, [], {}, "", [False]]


def _with_client_data_member(credential: dict, key: str, value: Any) -> dict:
    data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
    data[key] = value
    credential["response"]["clientDataJSON"] = b64url(json.dumps(data).encode())
    return credential


def _resigned(auth, credential: dict) -> dict:
    """The assertion signed again over its (changed) clientDataJSON: only the change differs."""
    response = credential["response"]
    signed = (
        base64url_to_bytes(response["authenticatorData"])
        + hashlib.sha256(base64url_to_bytes(response["clientDataJSON"])).digest()
    )
    response["signature"] = b64url(auth.credential(credential["id"]).sign(signed))
    return credential


@pytest.mark.parametrize("value", NOT_FALSE, ids=repr)
def test_login_with_a_non_boolean_cross_origin_is_refused(app, enrolled, auth, value):
    credential = auth.assert_(enrolled.login_options())
    credential = _resigned(auth, _with_client_data_member(credential, "crossOrigin", value))
    refused(enrolled.login_verify(credential), 400, "cross_origin")
    # The same assertion with crossOrigin false is a good one (the resigning is sound).
    credential = auth.assert_(enrolled.login_options())
    credential = _resigned(auth, _with_client_data_member(credential, "crossOrigin", False))
    assert enrolled.login_verify(credential).status_code == 200


@pytest.mark.parametrize("value", NOT_FALSE, ids=repr)
def test_registration_with_a_non_boolean_cross_origin_is_refused(app, smtp, auth, value):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    credential = auth.register(browser.register_options())
    credential = _with_client_data_member(credential, "crossOrigin", value)
    assert_json_error(browser.register_verify(credential), 400, "cross_origin")
    assert passkeys(app) == []


def test_registration_without_cross_origin_is_same_origin(app, smtp, auth):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    credential = auth.register(browser.register_options())
    data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
    del data["crossOrigin"]  # optional in the spec (older browsers leave it out)
    credential["response"]["clientDataJSON"] = b64url(json.dumps(data).encode())
    assert browser.register_verify(credential).status_code == 200


@pytest.mark.parametrize("cross_origin", [True, False])
def test_a_foreign_top_origin_is_refused(enrolled, auth, cross_origin):
    credential = auth.assert_(
        enrolled.login_options(), cross_origin=cross_origin, top_origin="https://evil.example"
    )
    refused(enrolled.login_verify(credential), 400, "cross_origin")


def test_a_registration_response_in_a_login_is_refused(app, smtp, enrolled, auth):
    """clientDataJSON.type must be webauthn.get in a login."""
    credential = auth.assert_(enrolled.login_options())
    data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
    data["type"] = "webauthn.create"
    credential["response"]["clientDataJSON"] = b64url(json.dumps(data).encode())
    refused(enrolled.login_verify(credential), 400, "malformed_credential")


# --------------------------------------------------------------------------- authenticator data


def test_a_foreign_rp_id_hash_is_refused(enrolled, auth):
    response = enrolled.login_verify(auth.assert_(enrolled.login_options(), rp_id="evil.example"))
    refused(response, 400, "verification_failed")


def test_registration_for_a_foreign_rp_id_is_refused(app, smtp, auth):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    response = browser.register_verify(
        auth.register(browser.register_options(), rp_id="example.com")
    )
    assert_json_error(response, 400, "verification_failed")


def test_user_presence_is_required(enrolled, auth):
    response = enrolled.login_verify(auth.assert_(enrolled.login_options(), user_present=False))
    refused(response, 400, "verification_failed")


def test_user_verification_is_required(app, enrolled, auth):
    response = enrolled.login_verify(auth.assert_(enrolled.login_options(), user_verified=False))
    refused(response, 400, "user_verification_required")
    (event,) = rows(app, LoginEvent, LoginEvent.outcome == "failure")
    assert (event.reason, event.user_id) == ("user_verification_required", user_row(app).id)


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        ({"user_verified": False}, "user_verification_required"),
        ({"user_present": False}, "verification_failed"),
    ],
)
def test_registration_needs_presence_and_verification(app, smtp, auth, flags, error):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    response = browser.register_verify(auth.register(browser.register_options(), **flags))
    assert_json_error(response, 400, error)
    assert passkeys(app) == []


def test_a_bogus_signature_is_refused(app, enrolled, auth):
    response = enrolled.login_verify(auth.assert_(enrolled.login_options(), bogus_signature=True))
    refused(response, 400, "verification_failed")
    row = the_passkey(app)
    assert (row.sign_count, row.last_used_at, row.cloned_at) == (0, None, None)


def test_a_forged_low_counter_does_not_block_the_passkey(app, enrolled, auth):
    """The counter is only compared once the signature is genuine."""
    assert enrolled.login(auth, sign_count=10).status_code == 200
    enrolled.logout()
    credential = auth.assert_(enrolled.login_options(), sign_count=2, bogus_signature=True)
    refused(enrolled.login_verify(credential), 400, "verification_failed")
    assert the_passkey(app).cloned_at is None
    assert enrolled.login(auth, sign_count=11).status_code == 200


# --------------------------------------------------------------------------- whose credential


def test_a_user_handle_of_another_account_is_refused(app, two_users):
    mine, my_auth, _theirs, their_auth = two_users
    their_handle = their_auth.credential().user_handle
    assert their_handle == user_row(app, OTHER).user_handle
    response = mine.login(my_auth, user_handle=their_handle)
    refused(response, 401, "user_handle_mismatch")
    # Also when the account was named first.
    response = mine.login(my_auth, USER, user_handle=their_handle)
    refused(response, 401, "user_handle_mismatch")
    event = rows(app, LoginEvent, LoginEvent.outcome == "failure")[-1]
    assert event.user_id == user_row(app, USER).id


def test_a_discoverable_login_needs_the_user_handle(enrolled, auth):
    refused(enrolled.login(auth, user_handle=None), 401, "user_handle_mismatch")


def test_a_passkey_of_another_account_does_not_open_this_one(app, two_users):
    _mine, my_auth, theirs, _their_auth = two_users
    options = theirs.login_options(OTHER)
    credential = my_auth.assert_(options, credential_id=my_auth.credential().credential_id)
    refused(theirs.login_verify(credential), 401, "unknown_credential")
    assert not theirs.logged_in()


def test_an_unknown_credential_is_refused(enrolled):
    stranger = authenticator()
    stranger.register({"challenge": "AAAA", "user": {"id": b64url(b"nobody")}})
    refused(enrolled.login(stranger), 401, "unknown_credential")


def test_a_deleted_passkey_no_longer_logs_in(app, enrolled, auth):
    with get_database(app).session_scope() as session:
        session.execute(delete(WebAuthnCredential))
    refused(enrolled.login(auth), 401, "unknown_credential")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"locked_at": utcnow()}, "account_unavailable"),
        ({"activated_at": None}, "account_unavailable"),
    ],
)
def test_a_locked_account_cannot_log_in_with_its_passkey(app, enrolled, auth, change, error):
    with get_database(app).session_scope() as session:
        session.execute(update(User).values(**change))
    refused(enrolled.login(auth), 403, error)


def test_a_passkey_under_review_cannot_log_in(app, enrolled, auth):
    with get_database(app).session_scope() as session:
        session.execute(update(WebAuthnCredential).values(review_required=True))
    refused(enrolled.login(auth), 403, "account_unavailable")


# --------------------------------------------------------------------------- signature counter


@pytest.mark.parametrize("regressed", [3, 5, 0])
def test_a_counter_going_backwards_marks_the_passkey_cloned(app, enrolled, auth, regressed):
    assert enrolled.login(auth, sign_count=5).status_code == 200
    enrolled.logout()

    refused(enrolled.login(auth, sign_count=regressed), 401, "credential_cloned")
    row = the_passkey(app)
    assert row.cloned_at is not None
    assert row.sign_count == 5
    (event,) = rows(app, SecurityEvent, SecurityEvent.kind == "passkey_cloned")
    assert event.user_id == user_row(app).id
    assert event.severity == "high"
    assert event.details["credential"] == row.id
    failure = rows(app, LoginEvent, LoginEvent.outcome == "failure")[-1]
    assert (failure.reason, failure.user_id) == ("credential_cloned", row.user_id)

    # Blocked from now on, whatever the counter says.
    refused(enrolled.login(auth, sign_count=100), 401, "credential_cloned")
    assert not enrolled.logged_in()
    assert count(app, SecurityEvent, SecurityEvent.kind == "passkey_cloned") == 1


def test_a_replay_racing_its_own_login_is_not_taken_for_a_clone(app, enrolled, auth, monkeypatch):
    """The replay read the ceremony before the genuine login spent it, and the passkey after
    that login stored its counter: the counter did not move, but this is a replay (the
    ceremony is gone), never a clone: the passkey must not be blocked."""
    credential = auth.assert_(enrolled.login_options())
    challenge = authentication.read_assertion(credential).challenge
    with app.app_context():
        store = service.store()
        seen = store.peek(challenge)
    assert seen is not None
    replay = _second_browser(app, enrolled)
    assert enrolled.login_verify(credential).status_code == 200
    monkeypatch.setattr(type(store), "peek", lambda self, key: seen)  # the earlier read

    refused(
        replay.post("/webauthn/login/verify", json={"credential": credential}),
        400,
        "challenge_invalid",
    )
    assert the_passkey(app).cloned_at is None
    assert count(app, SecurityEvent, SecurityEvent.kind == "passkey_cloned") == 0
    monkeypatch.undo()
    enrolled.logout()
    assert enrolled.login(auth).status_code == 200


def test_counters_that_stay_at_zero_are_accepted(app, enrolled, auth):
    """Synced passkeys (iCloud Keychain, Google Password Manager) always send 0."""
    for _ in range(3):
        assert enrolled.login(auth, sign_count=0).status_code == 200
        enrolled.logout()
    row = the_passkey(app)
    assert (row.sign_count, row.cloned_at) == (0, None)


def test_a_counter_starting_at_registration_must_increase(app, smtp):
    auth = authenticator()
    browser = enroll(app, smtp, auth, seed=True, sign_count=7)
    assert the_passkey(app).sign_count == 7
    refused(browser.login(auth, sign_count=7), 401, "credential_cloned")


def test_the_counter_is_stored(app, enrolled, auth):
    for expected in (1, 2, 40):
        sign_count = None if expected < 40 else 40
        assert enrolled.login(auth, sign_count=sign_count).status_code == 200
        enrolled.logout()
        assert the_passkey(app).sign_count == expected


# --------------------------------------------------------------------------- backup flags


@pytest.mark.parametrize(("registered", "claimed"), [(False, True), (True, False)])
def test_backup_eligibility_cannot_change(app, smtp, registered, claimed):
    auth = authenticator(backup_eligible=registered)
    browser = enroll(app, smtp, auth, seed=True)
    response = browser.login(auth, backup_eligible=claimed, backup_state=False)
    refused(response, 401, "backup_eligibility_mismatch")


def test_backup_state_is_updated(app, smtp):
    auth = authenticator(backup_eligible=True, backup_state=False)
    browser = enroll(app, smtp, auth, seed=True)
    assert the_passkey(app).backup_state is False
    assert browser.login(auth, backup_state=True).status_code == 200
    assert the_passkey(app).backup_state is True
    browser.logout()
    assert browser.login(auth, backup_state=False).status_code == 200
    assert the_passkey(app).backup_state is False


def test_backed_up_without_eligibility_is_refused(app, enrolled, auth):
    response = enrolled.login(auth, backup_eligible=False, backup_state=True)
    refused(response, 400, "verification_failed")


# --------------------------------------------------------------------------- registration data


def _attestation(credential: dict, obj: Any) -> dict:
    """The same response with another attestationObject (CBOR of ``obj``, or raw bytes)."""
    raw = obj if isinstance(obj, bytes) else cbor_encode(obj)
    credential["response"]["attestationObject"] = b64url(raw)
    return credential


def _auth_data(
    *,
    flags: int = 0x45,  # UP, UV, AT
    credential_id: bytes = b"\x07" * 16,
    cose_key: Any = None,
    rp_id: str = RP_ID,
    tail: bytes = b"",
) -> bytes:
    if cose_key is None:
        cose_key = _ES256_COSE
    key = cose_key if isinstance(cose_key, bytes) else cbor_encode(cose_key)
    attested = (
        bytes(16) + len(credential_id).to_bytes(2, "big") + credential_id + key
        if flags & 0x40
        else b""
    )
    return (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags])
        + (0).to_bytes(4, "big")
        + attested
        + tail
    )


def _genuine_es256_cose() -> bytes:
    auth = authenticator()
    auth.register({"challenge": "AAAA", "user": {"id": "AAAA"}})
    return auth.credential().cose_key


_ES256_COSE = _genuine_es256_cose()


def _none(auth_data: bytes, **extra: Any) -> dict:
    return {"fmt": "none", "attStmt": {}, "authData": auth_data, **extra}


X = b"\x01" * 32
BAD_ATTESTATIONS = [
    ("cbor-garbage", b"\xff\x00\xff"),
    ("cbor-truncated", cbor_encode(_none(_auth_data()))[:-5]),
    ("cbor-int", 1),
    ("cbor-list", []),
    ("no-fmt", {"attStmt": {}, "authData": _auth_data()}),
    ("no-authData", {"fmt": "none", "attStmt": {}}),
    ("authData-text", _none("authData")),  # type: ignore[arg-type]
    ("authData-int", _none(5)),  # type: ignore[arg-type]
    ("authData-short", _none(b"\x00" * 20)),
    ("authData-no-attested-credential", _none(_auth_data(flags=0x05))),
    ("authData-leftover", _none(_auth_data(tail=b"\x00\x00"))),
    ("authData-extensions-garbage", _none(_auth_data(flags=0xC5, tail=b"\xff"))),
    ("authData-BS-without-BE", _none(_auth_data(flags=0x55))),
    ("fmt-int", {"fmt": 1, "attStmt": {}, "authData": _auth_data()}),
    ("fmt-unknown", {"fmt": "selfie", "attStmt": {}, "authData": _auth_data()}),
    ("attStmt-int", {"fmt": "none", "attStmt": 3, "authData": _auth_data()}),
    ("attStmt-none-not-empty", {"fmt": "none", "attStmt": {"sig": b"x"}, "authData": _auth_data()}),
    ("packed-empty", {"fmt": "packed", "attStmt": {}, "authData": _auth_data()}),
    (
        "packed-self-bad-sig",
        {"fmt": "packed", "attStmt": {"alg": -7, "sig": b"\x30\x00"}, "authData": _auth_data()},
    ),
    (
        "packed-x5c-garbage",
        {
            "fmt": "packed",
            "attStmt": {"alg": -7, "sig": b"x", "x5c": [b"?"]},
            "authData": _auth_data(),
        },
    ),
    (
        "packed-x5c-text",
        {
            "fmt": "packed",
            "attStmt": {"alg": -7, "sig": b"x", "x5c": "?"},
            "authData": _auth_data(),
        },
    ),
    ("tpm-empty", {"fmt": "tpm", "attStmt": {}, "authData": _auth_data()}),
    (
        "tpm-garbage",
        {
            "fmt": "tpm",
            "attStmt": {
                "ver": "2.0",
                "alg": -257,
                "x5c": [b"?"],
                "sig": b"?",
                "certInfo": b"?",
                "pubArea": b"?",
            },
            "authData": _auth_data(),
        },
    ),
    ("android-key-empty", {"fmt": "android-key", "attStmt": {}, "authData": _auth_data()}),
    (
        "android-key-garbage",
        {
            "fmt": "android-key",
            "attStmt": {"alg": -7, "sig": b"?", "x5c": [b"?"]},
            "authData": _auth_data(),
        },
    ),
    ("apple-empty", {"fmt": "apple", "attStmt": {}, "authData": _auth_data()}),
    ("apple-garbage", {"fmt": "apple", "attStmt": {"x5c": [b"?"]}, "authData": _auth_data()}),
    ("fido-u2f-empty", {"fmt": "fido-u2f", "attStmt": {}, "authData": _auth_data()}),
    (
        "fido-u2f-garbage",
        {"fmt": "fido-u2f", "attStmt": {"sig": b"?", "x5c": [b"?"]}, "authData": _auth_data()},
    ),
    ("safetynet-empty", {"fmt": "android-safetynet", "attStmt": {}, "authData": _auth_data()}),
    (
        "safetynet-garbage",
        {
            "fmt": "android-safetynet",
            "attStmt": {"ver": "1", "response": b"not.a.jws"},
            "authData": _auth_data(),
        },
    ),
    ("cose-list", _none(_auth_data(cose_key=[]))),
    ("cose-text", _none(_auth_data(cose_key="key"))),
    ("cose-legacy-u2f-byte", _none(_auth_data(cose_key=4))),
    ("cose-empty-map", _none(_auth_data(cose_key={}))),
    ("cose-ec2-off-curve", _none(_auth_data(cose_key={1: 2, 3: -7, -1: 1, -2: X, -3: X}))),
    ("cose-ec2-short", _none(_auth_data(cose_key={1: 2, 3: -7, -1: 1, -2: b"\x01", -3: b"\x02"}))),
    ("cose-ec2-text-coords", _none(_auth_data(cose_key={1: 2, 3: -7, -1: 1, -2: "x", -3: "y"}))),
    ("cose-ec2-unknown-curve", _none(_auth_data(cose_key={1: 2, 3: -7, -1: 99, -2: X, -3: X}))),
    ("cose-es384-not-offered", _none(_auth_data(cose_key={1: 2, 3: -35, -1: 2, -2: X, -3: X}))),
    ("cose-okp-x25519", _none(_auth_data(cose_key={1: 1, 3: -8, -1: 4, -2: X}))),
    ("cose-okp-short", _none(_auth_data(cose_key={1: 1, 3: -8, -1: 6, -2: b"\x01"}))),
    ("cose-rsa-tiny", _none(_auth_data(cose_key={1: 3, 3: -257, -1: b"\x01", -2: b"\x03"}))),
    ("cose-unknown-kty", _none(_auth_data(cose_key={1: 9, 3: -7}))),
    ("credential-id-empty", _none(_auth_data(credential_id=b""))),
    ("credential-id-1024-bytes", _none(_auth_data(credential_id=b"\x07" * 1024))),
    ("foreign-rp-id", _none(_auth_data(rp_id="evil.example"))),
]


@pytest.mark.parametrize("obj", [pytest.param(o, id=i) for i, o in BAD_ATTESTATIONS])
def test_bad_attestation_objects_are_refused(app, smtp, obj):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    credential = _attestation(authenticator().register(browser.register_options()), obj)
    response = browser.register_verify(credential)
    assert_json_error(response, 400)
    assert passkeys(app) == []


def test_a_credential_id_of_1023_bytes_is_accepted(app, smtp):
    auth = authenticator()
    enroll(app, smtp, auth, seed=True, credential_id=b"\x07" * 1023)
    assert len(the_passkey(app).credential_id) == 1023


# --------------------------------------------------------------------------- unit: client_data.py

RP = RelyingParty(id=RP_ID, name="France Travail Pro", origins=(ORIGIN, "https://pro.localhost"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AQID", b"\x01\x02\x03"),
        ("AQI", b"\x01\x02"),
        ("AQI=", b"\x01\x02"),
        ("", b""),
        ("-_8", b"\xfb\xff"),
    ],
)
def test_b64_decodes_base64url(text, expected):
    assert client_data.b64(text, "field") == expected


@pytest.mark.parametrize(
    "value",
    [
        "***",
        "AQ+/",
        "AQ I",
        "AQ==x",
        "AQID\n",
        "A",
        "é",
        None,
        12,
        ["AQID"],
        "A" * (client_data.MAX_FIELD + 1),
    ],
)
def test_b64_refuses_anything_else(value):
    with pytest.raises(MalformedCredential):
        client_data.b64(value, "field")


def test_b64_optional_field():
    assert client_data.b64(None, "userHandle", optional=True) is None
    with pytest.raises(MalformedCredential):
        client_data.b64(3, "userHandle", optional=True)


def _with_client_data(data: Any) -> dict:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {"response": {"clientDataJSON": b64url(raw)}}


def test_parse_client_data_reads_what_py_webauthn_ignores():
    parsed = client_data.parse_client_data(
        _with_client_data(
            {
                "type": "webauthn.get",
                "challenge": "AQID",
                "origin": ORIGIN,
                "crossOrigin": True,
                "topOrigin": "https://evil.example",
            }
        ),
        "webauthn.get",
    )
    assert parsed == client_data.ClientData(
        type="webauthn.get",
        challenge=b"\x01\x02\x03",
        origin=ORIGIN,
        cross_origin=True,
        top_origin="https://evil.example",
    )
    minimal = {"type": "webauthn.get", "challenge": "AQID", "origin": ORIGIN}
    parsed = client_data.parse_client_data(_with_client_data(minimal), "webauthn.get")
    assert (parsed.cross_origin, parsed.top_origin) == (False, None)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe",
        b"[" * 3000 + b"]" * 3000,
        [],
        "string",
        {"type": "webauthn.create", "challenge": "AQID", "origin": ORIGIN},
        {"challenge": "AQID", "origin": ORIGIN},
        {"type": "webauthn.get", "origin": ORIGIN},
        {"type": "webauthn.get", "challenge": 5, "origin": ORIGIN},
        {"type": "webauthn.get", "challenge": "a b", "origin": ORIGIN},
        {"type": "webauthn.get", "challenge": "AQID"},
        {"type": "webauthn.get", "challenge": "AQID", "origin": ["http://localhost:5000"]},
    ],
)
def test_parse_client_data_refuses_malformed_data(data):
    with pytest.raises(MalformedCredential):
        client_data.parse_client_data(_with_client_data(data), "webauthn.get")


@pytest.mark.parametrize("value", [*NOT_FALSE, True], ids=repr)
def test_parse_client_data_reads_anything_but_false_as_cross_origin(value):
    data = {"type": "webauthn.get", "challenge": "AQID", "origin": ORIGIN, "crossOrigin": value}
    parsed = client_data.parse_client_data(_with_client_data(data), "webauthn.get")
    assert parsed.cross_origin is True
    with pytest.raises(CrossOriginRefused):
        client_data.check_origin(parsed, RP.origins)


@pytest.mark.parametrize("value", [5, ["https://evil.example"], {}, True])
def test_parse_client_data_refuses_a_top_origin_that_is_not_a_string(value):
    data = {"type": "webauthn.get", "challenge": "AQID", "origin": ORIGIN, "topOrigin": value}
    with pytest.raises(MalformedCredential):
        client_data.parse_client_data(_with_client_data(data), "webauthn.get")


def _client(origin: str = ORIGIN, cross: bool = False, top: str | None = None) -> Any:
    return client_data.ClientData("webauthn.get", b"c", origin, cross, top)


@pytest.mark.parametrize("origin", [ORIGIN, "https://pro.localhost"])
def test_check_origin_accepts_the_configured_origins(origin):
    client_data.check_origin(_client(origin), RP.origins)
    client_data.check_origin(_client(origin, top=ORIGIN), RP.origins)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (_client("http://localhost:5000/"), OriginMismatch),
        (_client("HTTP://LOCALHOST:5000"), OriginMismatch),
        (_client("https://evil.example", cross=True), OriginMismatch),
        (_client(cross=True), CrossOriginRefused),
        (_client(cross=True, top=ORIGIN), CrossOriginRefused),
        (_client(top="https://evil.example"), CrossOriginRefused),
    ],
)
def test_check_origin_refuses(data, error):
    with pytest.raises(error):
        client_data.check_origin(data, RP.origins)


def test_check_shape_needs_the_fields_of_each_ceremony():
    auth = authenticator()
    created = auth.register({"challenge": "AQID", "user": {"id": "AQID"}})
    asserted = auth.assert_({"challenge": "AQID"})
    assert client_data.check_shape(created, "create") is created
    assert client_data.check_shape(asserted, "get") is asserted
    with pytest.raises(MalformedCredential):
        client_data.check_shape(created, "get")
    with pytest.raises(MalformedCredential):
        client_data.check_shape(asserted, "create")


# ------------------------------------------------------------------------- unit: authentication.py


class Ceremony:
    """A passkey made by a SoftAuthenticator, and what the server stored at registration."""

    def __init__(self, *, backup_eligible: bool = False, sign_count: int = 0) -> None:
        self.auth = authenticator(backup_eligible=backup_eligible)
        self.owner = b"owner handle"
        self.auth.register({"challenge": "AQID", "user": {"id": b64url(self.owner)}})
        self.stored = authentication.StoredCredential(
            public_key=self.auth.credential().cose_key,
            sign_count=sign_count,
            backup_eligible=backup_eligible,
            owner_user_handle=self.owner,
        )
        self.challenge = b"\x42" * 32

    def verify(self, *, require_user_handle: bool = True, expected: bytes | None = None, **kw: Any):
        options = authentication.request_options(
            rp=RP, challenge=self.challenge, allow_credentials=None, timeout_ms=60_000
        )
        assertion = authentication.read_assertion(self.auth.assert_(options, **kw))
        return authentication.verify_assertion(
            rp=RP,
            assertion=assertion,
            expected_challenge=expected or self.challenge,
            stored=self.stored,
            require_user_handle=require_user_handle,
        )


def test_request_options_without_and_with_allow_credentials():
    discoverable = authentication.request_options(
        rp=RP, challenge=b"\x01" * 32, allow_credentials=None, timeout_ms=1000
    )
    assert not discoverable.get("allowCredentials")
    assert discoverable["userVerification"] == "required"
    existing = [
        authentication.ExistingCredential(b"\x01\x02", ("internal", "carrier-pigeon")),
        authentication.ExistingCredential(b"\x03", ()),
    ]
    named = authentication.request_options(
        rp=RP, challenge=b"\x01" * 32, allow_credentials=existing, timeout_ms=1000
    )
    assert named["allowCredentials"] == [
        {"id": "AQI", "type": "public-key", "transports": ["internal"]},
        {"id": "Aw", "type": "public-key"},
    ]


def test_read_assertion_reads_id_challenge_and_user_handle():
    ceremony = Ceremony()
    credential = ceremony.auth.assert_({"challenge": b64url(ceremony.challenge)})
    assertion = authentication.read_assertion(credential)
    assert assertion.credential_id == ceremony.auth.credential().credential_id
    assert assertion.challenge == ceremony.challenge
    assert assertion.user_handle == ceremony.owner
    credential = ceremony.auth.assert_({"challenge": "AQID"}, user_handle="")
    assert authentication.read_assertion(credential).user_handle is None


def test_verify_assertion_returns_the_new_counter_and_backup_state():
    result = Ceremony(backup_eligible=True, sign_count=3).verify(sign_count=4, backup_state=True)
    assert result == authentication.VerifiedAssertion(new_sign_count=4, backup_state=True)


@pytest.mark.parametrize(
    ("stored", "sent", "clone"),
    [(0, 0, False), (0, 1, False), (5, 6, False), (5, 5, True), (5, 4, True), (5, 0, True)],
)
def test_verify_assertion_counter_rule(stored, sent, clone):
    ceremony = Ceremony(sign_count=stored)
    if clone:
        with pytest.raises(CloneDetected):
            ceremony.verify(sign_count=sent)
    else:
        assert ceremony.verify(sign_count=sent).new_sign_count == sent


def test_verify_assertion_checks_the_signature_before_the_counter():
    with pytest.raises(VerificationFailed):
        Ceremony(sign_count=9).verify(sign_count=1, bogus_signature=True)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"user_verified": False}, UserVerificationRequired),
        ({"user_present": False}, VerificationFailed),
        ({"rp_id": "evil.example"}, VerificationFailed),
        ({"origin": "https://evil.example"}, OriginMismatch),
        ({"cross_origin": True}, CrossOriginRefused),
        ({"top_origin": "https://evil.example"}, CrossOriginRefused),
        ({"backup_eligible": True}, BackupEligibilityChanged),
        ({"user_handle": b"someone else"}, UserHandleMismatch),
        ({"user_handle": None}, UserHandleMismatch),
        ({"expected": b"\x00" * 32}, VerificationFailed),
    ],
)
def test_verify_assertion_refuses(kwargs, error):
    with pytest.raises(error):
        Ceremony().verify(**kwargs)


def test_verify_assertion_user_handle_when_the_account_was_named_first():
    ceremony = Ceremony()
    assert ceremony.verify(require_user_handle=False, user_handle=None).new_sign_count == 1
    with pytest.raises(UserHandleMismatch):
        ceremony.verify(require_user_handle=False, user_handle=b"someone else")
