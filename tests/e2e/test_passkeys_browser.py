"""Passkeys in headless Chromium with the DevTools virtual authenticator (issue 3).

Enrollment from the offer page and from "Mes clés d'accès", usernameless login by the button
and by autofill (conditional mediation), roaming and phone-like authenticators, assertions the
server must refuse (bad UV/UP flags, bogus signature, cloned counter, deleted passkey), the
offer's "later" and "never", rename, and French messages when the browser gives up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select, update

from authserver.db import get_database
from authserver.models import (
    AuthSession,
    LoginEvent,
    SecurityEvent,
    User,
    WebAuthnCredential,
    utcnow,
)
from authserver.webauthn import errors
from tests.conftest import PASSWORD, Actions
from tests.e2e.helpers import (
    ACCEPTED_SIGNALLED,
    CONDITIONAL_CREATE_STARTED,
    CONDITIONAL_GETS,
    CONDITIONAL_STARTED,
    HAS_CONDITIONAL_GET,
    MODAL_CREATE_STARTED,
    SIGNALS_DONE,
    UNKNOWN_SIGNALLED_ON_LOGIN,
    USERNAME,
    Watch,
    add_credential,
    at,
    credentials,
    enroll_from_offer,
    fake_capabilities,
    login_with_button,
    logout,
    logout_into_autofill,
    logout_keeping_autofill_pending,
    override_bits,
    passkey_hint,
    passkey_message,
    password_login,
    path_of,
    raw_id,
    set_presence,
    wait_logged_in,
)
from tests.fixtures_services import add_virtual_authenticator
from tests.services import LiveServer, free_port
from tests.softauthn import b64url


@dataclass
class Site:
    app: Flask
    url: str

    def rows(self, statement) -> list:
        with get_database(self.app).session_scope() as session:
            return list(session.scalars(statement))

    def execute(self, statement) -> None:
        with get_database(self.app).session_scope() as session:
            session.execute(statement)

    def passkeys(self) -> list[WebAuthnCredential]:
        return self.rows(select(WebAuthnCredential).order_by(WebAuthnCredential.id))

    def passkey_logins(self, outcome: str) -> list[LoginEvent]:
        return self.rows(
            select(LoginEvent)
            .where(LoginEvent.method == "passkey", LoginEvent.outcome == outcome)
            .order_by(LoginEvent.id)
        )

    def user(self) -> User:
        return self.rows(select(User).where(User.username == USERNAME))[0]


@pytest.fixture
def server(make_app):
    """A live server on http://localhost:PORT (rp id localhost)."""
    port = free_port()
    app = make_app(AUTHSERVER_BASE_URL=f"http://localhost:{port}")
    live = LiveServer(app, port=port).start()
    try:
        yield Site(app, live.url)
    finally:
        live.stop()


@pytest.fixture
def site(server, smtp):
    """The live server with one active account, ``USERNAME`` / ``PASSWORD``."""
    Actions(server.app.test_client(), smtp).create_active_account(USERNAME)
    return server


@pytest.fixture
def watch(page):
    """No console error, page error or CSP violation on any page the test visits."""
    watcher = Watch(page)
    yield watcher
    assert watcher.unexpected() == []


def assert_refused(page, site: Site, watch: Watch, error: type[errors.CeremonyError]) -> None:
    """The page shows the server's French message, stays on /login, the event is recorded."""
    message = passkey_message(page)
    message.wait_for(state="visible")
    assert message.inner_text() == error.message
    assert path_of(page) == "/login"
    assert site.passkey_logins("failure")[-1].reason == error.error
    # The browser got an answer from the authenticator: the server is the one refusing.
    last_get = [c for c in watch.calls if c["method"] == "get"][-1]
    assert last_get["outcome"] == "ok"


# --- Enrollment and the two login paths ------------------------------------------------------


@pytest.mark.e2e
def test_platform_passkey_offer_then_button_then_autofill(page, site, watch):
    cdp, aid = add_virtual_authenticator(page, transport="internal")
    assert password_login(page, site.url) == "/passkeys/offer"
    for label in ("Activer", "Peut-être plus tard", "Ne plus me proposer ce moyen de connexion"):
        assert page.get_by_role("button", name=label, exact=True).is_visible()
    page.get_by_role("button", name="Activer", exact=True).click()
    landing = wait_logged_in(page)

    (stored,) = credentials(cdp, aid)
    (passkey,) = site.passkeys()
    assert passkey.credential_id == raw_id(stored)
    assert passkey.user_id == site.user().id
    assert "internal" in passkey.transports.split(",")
    assert passkey.name and passkey.created_at and passkey.last_used_at is None
    assert [c["mediation"] for c in watch.succeeded("create")] == [""]

    # The button, usernameless: no identifiant typed, no allowCredentials.
    logout_keeping_autofill_pending(page, cdp, aid)
    assert login_with_button(page) == {}
    assert path_of(page) == landing  # the same destination as after a password login
    button_get = watch.succeeded("get")[-1]
    assert (button_get["mediation"], button_get["allow"], button_get["path"]) == ("", 0, "/login")
    (event,) = site.passkey_logins("success")
    assert event.user_id == site.user().id
    (session,) = site.rows(select(AuthSession).where(AuthSession.method == "passkey"))
    assert set(session.amr.split()) == {"hwk", "user"}
    first_count = site.passkeys()[0].sign_count

    # Autofill: the login page's conditional request logs in without any click.
    assert logout_into_autofill(page).ok
    assert wait_logged_in(page) == landing
    autofill_get = watch.succeeded("get")[-1]
    assert (autofill_get["mediation"], autofill_get["allow"]) == ("conditional", 0)
    assert len(site.passkey_logins("success")) == 2
    (passkey,) = site.passkeys()
    assert passkey.sign_count > first_count and passkey.last_used_ip == "127.0.0.1"


@pytest.mark.e2e
def test_identifiant_field_offers_passkeys_in_autofill(page, server, watch):
    page.goto(server.url + "/login")
    field = page.get_by_label("Identifiant", exact=True)
    assert field.get_attribute("autocomplete") == "username webauthn"
    assert page.get_by_role("button", name="Se connecter sans mot de passe").is_visible()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("transport", "username"),
    [("usb", USERNAME), ("hybrid", None)],
    ids=["usb-username-first", "hybrid-usernameless"],
)
def test_roaming_and_phone_authenticators(page, site, watch, transport, username):
    cdp, aid = add_virtual_authenticator(page, transport=transport)
    enroll_from_offer(page, site.url)
    (passkey,) = site.passkeys()
    assert transport in passkey.transports.split(",")

    logout_keeping_autofill_pending(page, cdp, aid)
    body = login_with_button(page, username)
    assert body == ({"username": username} if username else {})
    assert watch.succeeded("get")[-1]["allow"] == (1 if username else 0)
    (event,) = site.passkey_logins("success")
    assert event.user_id == passkey.user_id


# --- Assertions the server must refuse -------------------------------------------------------


@pytest.mark.e2e
def test_tampered_assertions_are_refused_by_the_server(page, site, watch):
    watch.allow_http_errors()
    cdp, aid = add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    count = site.passkeys()[0].sign_count
    cases = [
        ("isBadUV", errors.UserVerificationRequired),
        ("isBadUP", errors.VerificationFailed),
        ("isBogusSignature", errors.VerificationFailed),
    ]
    for index, (bit, error) in enumerate(cases):  # one tampered bit at a time
        bits = {name: name == bit for name, _ in cases}
        cdp.send("WebAuthn.setResponseOverrideBits", {"authenticatorId": aid, **bits})
        verify = logout_into_autofill(page, reload=index > 0)
        assert verify.status in (400, 401), bit
        assert_refused(page, site, watch, error)

    failures = site.passkey_logins("failure")
    assert [e.reason for e in failures] == [error.error for _, error in cases]
    assert {e.user_id for e in failures} == {site.user().id}
    assert site.rows(select(AuthSession).where(AuthSession.method == "passkey")) == []
    assert site.passkeys()[0].sign_count == count


@pytest.mark.e2e
def test_cloned_credential_is_refused_and_reported(page, site, watch):
    watch.allow_http_errors()
    cdp, aid = add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    (copy,) = credentials(cdp, aid)  # the authenticator's state right after registration

    assert logout_into_autofill(page).ok  # the counter goes up
    wait_logged_in(page)
    (passkey,) = site.passkeys()
    assert passkey.sign_count > copy["signCount"]

    # The copy, with its older (lower) counter, replaces the original.
    cdp.send(
        "WebAuthn.removeCredential",
        {"authenticatorId": aid, "credentialId": copy["credentialId"]},
    )
    add_credential(cdp, aid, copy, signCount=copy["signCount"])
    assert credentials(cdp, aid)[0]["signCount"] < passkey.sign_count
    assert logout_into_autofill(page).status == 401
    assert_refused(page, site, watch, errors.CloneDetected)

    (passkey,) = site.passkeys()
    assert passkey.cloned_at is not None
    (alert,) = site.rows(select(SecurityEvent).where(SecurityEvent.kind == "passkey_cloned"))
    assert alert.user_id == passkey.user_id
    assert alert.details["credential"] == passkey.id


@pytest.mark.e2e
def test_deleted_passkey_cannot_log_in(page, site, watch):
    watch.allow_http_errors()
    cdp, aid = add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    (copy,) = credentials(cdp, aid)
    # Past the 5 minutes of a recent login: deleting asks for the password again.
    site.execute(update(AuthSession).values(authenticated_at=utcnow() - timedelta(minutes=10)))

    page.goto(site.url + "/account/passkeys")
    page.get_by_role("button", name="Supprimer", exact=True).click()
    page.wait_for_url(at("/account/reauth"))
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Confirmer", exact=True).click()
    page.wait_for_url(at("/account/passkeys"))
    assert site.passkeys(), "nothing may be deleted before the re-authentication"
    page.get_by_role("button", name="Supprimer", exact=True).click()
    page.get_by_text("La clé d'accès a été supprimée.").wait_for()
    assert page.get_by_text("Vous n'avez encore aucune clé d'accès.").is_visible()
    assert page.get_by_role("button", name="Supprimer").count() == 0
    assert site.passkeys() == []

    # The Signal API told the authenticator, which forgot the passkey...
    page.wait_for_function(SIGNALS_DONE)
    removed = [c for c in watch.calls if c["method"] == "signalUnknownCredential"]
    assert [c["outcome"] for c in removed] == ["ok"]
    assert credentials(cdp, aid) == []
    # ...but a password manager that ignores it still offers it: the server refuses it, and
    # the login page tells the password manager again, which forgets it this time.
    add_credential(cdp, aid, copy)
    assert logout_into_autofill(page).status == 401
    assert_refused(page, site, watch, errors.UnknownCredential)
    page.wait_for_function(UNKNOWN_SIGNALLED_ON_LOGIN)
    (on_login,) = [
        c for c in watch.calls if c["method"] == "signalUnknownCredential" and c["path"] == "/login"
    ]
    assert on_login["credentialId"] == b64url(raw_id(copy))
    assert on_login["outcome"] == "ok"
    assert credentials(cdp, aid) == []


# --- The offer's choices and the passkeys page -----------------------------------------------


@pytest.mark.e2e
def test_later_postpones_the_offer(page, site, watch):
    add_virtual_authenticator(page)
    assert password_login(page, site.url) == "/passkeys/offer"
    page.get_by_role("button", name="Peut-être plus tard", exact=True).click()
    landing = wait_logged_in(page)
    user = site.user()
    assert user.passkey_offer_after > utcnow() + timedelta(days=1)
    assert not user.passkey_offer_refused

    logout(page)
    assert password_login(page, site.url) == landing
    assert site.passkeys() == []

    # Once the delay has passed, the offer comes back.
    site.execute(update(User).values(passkey_offer_after=utcnow() - timedelta(seconds=1)))
    logout(page)
    assert password_login(page, site.url) == "/passkeys/offer"


@pytest.mark.e2e
def test_never_stops_the_offer_but_passkeys_page_still_adds_one(page, site, watch):
    cdp, aid = add_virtual_authenticator(page)
    assert password_login(page, site.url) == "/passkeys/offer"
    page.get_by_role("button", name="Ne plus me proposer ce moyen de connexion").click()
    landing = wait_logged_in(page)
    assert page.get_by_text("nous ne vous proposerons plus la connexion sans mot de passe").count()
    assert site.user().passkey_offer_refused

    logout(page)
    assert password_login(page, site.url) == landing

    page.goto(site.url + "/account/passkeys")
    page.get_by_role("button", name="Ajouter une clé d'accès", exact=True).click()
    page.get_by_role("button", name="Supprimer", exact=True).wait_for()
    assert path_of(page) == "/account/passkeys"
    (passkey,) = site.passkeys()
    assert passkey.credential_id == raw_id(credentials(cdp, aid)[0])
    assert page.get_by_role("heading", name=passkey.name).is_visible()

    assert logout_into_autofill(page).ok  # and it logs in
    wait_logged_in(page)
    assert len(site.passkey_logins("success")) == 1


@pytest.mark.e2e
def test_rename_a_passkey(page, site, watch):
    add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    page.goto(site.url + "/account/passkeys")
    page.get_by_label("Nom de la clé d'accès").fill("  PC du   bureau ")
    page.get_by_role("button", name="Renommer", exact=True).click()
    page.get_by_text("La clé d'accès a été renommée.").wait_for()
    assert page.get_by_role("heading", name="PC du bureau", exact=True).is_visible()
    assert site.passkeys()[0].name == "PC du bureau"


@pytest.mark.e2e
def test_second_passkey_on_the_same_authenticator_is_excluded(page, site, watch):
    cdp, aid = add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    page.goto(site.url + "/account/passkeys")
    page.get_by_role("button", name="Ajouter une clé d'accès", exact=True).click()
    message = passkey_message(page)
    message.wait_for(state="visible")
    assert "déjà" in message.inner_text()
    assert page.get_by_role("button", name="Ajouter une clé d'accès").is_enabled()
    assert [c["outcome"] for c in watch.calls if c["method"] == "create"][-1] == (
        "InvalidStateError"
    )
    assert len(site.passkeys()) == 1 and len(credentials(cdp, aid)) == 1


# --- When the browser gives up ----------------------------------------------------------------


@pytest.mark.e2e
def test_refused_or_abandoned_ceremony_shows_a_french_message(page, site, watch):
    # The device cannot verify the user: Chromium refuses (NotAllowedError) before the server.
    cdp, aid = add_virtual_authenticator(page, uv=False)
    page.clock.install()
    assert password_login(page, site.url) == "/passkeys/offer"
    verifies: list[str] = []
    page.on("request", lambda r: verifies.append(r.url) if "/register/verify" in r.url else None)
    page.get_by_role("button", name="Activer", exact=True).click()
    message = passkey_message(page)
    message.wait_for(state="visible")
    assert message.inner_text().startswith("Opération annulée")
    assert verifies == [] and site.passkeys() == []
    assert page.get_by_role("button", name="Activer").is_enabled()

    # Nobody touches the authenticator: the page's own AbortSignal ends the ceremony.
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": aid})
    cdp, aid = add_virtual_authenticator(page)
    set_presence(cdp, aid, False)
    page.reload()
    page.get_by_role("button", name="Activer", exact=True).click()
    page.wait_for_function(MODAL_CREATE_STARTED)
    assert not message.is_visible()
    page.clock.run_for("05:01")
    message.wait_for(state="visible")
    assert message.inner_text().startswith("Délai dépassé")
    assert verifies == [] and site.passkeys() == []


# --- Conditional create, autofill that stays alive, what the page says ----------------------


@pytest.mark.e2e
def test_offer_page_starts_a_conditional_create(page, site, watch):
    add_virtual_authenticator(page)
    with page.expect_request(lambda r: r.url.endswith("/webauthn/register/options")) as request:
        assert password_login(page, site.url) == "/passkeys/offer"
    # The server is told, so that it verifies this ceremony without UP/UV (the browser asks
    # the authenticator for neither), and it accepts right after the password login.
    assert request.value.post_data_json == {"mediation": "conditional"}
    assert request.value.response().status == 200
    page.wait_for_function(CONDITIONAL_CREATE_STARTED)
    # Chromium reports conditionalCreate, but only completes one for a password its own
    # password manager just filled: here it stays pending, and `Activer` replaces it.
    page.get_by_role("button", name="Activer", exact=True).click()
    wait_logged_in(page)
    assert [c["mediation"] for c in watch.succeeded("create")] == [""]
    conditional = [c for c in watch.calls if c["method"] == "create" and c["mediation"]]
    assert [(c["mediation"], c["outcome"]) for c in conditional] == [("conditional", "AbortError")]
    assert len(site.passkeys()) == 1


@pytest.mark.e2e
def test_autofill_starts_again_after_its_own_timeout(page, site, watch):
    cdp, aid = add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    page.clock.install()
    # Nobody picks the passkey: the autofill request waits until its 5 minutes are over...
    set_presence(cdp, aid, False)
    logout(page)
    page.wait_for_function(CONDITIONAL_STARTED)
    with page.expect_request(lambda r: r.url.endswith("/webauthn/login/options")):
        page.clock.run_for("05:01")
    # ...and then a new one takes its place, with a fresh challenge.
    page.wait_for_function(f"() => ({CONDITIONAL_GETS})() === 2")
    outcomes = page.evaluate(
        "() => window.__passkeyCalls.filter((c) => c.method === 'get').map((c) => c.outcome)"
    )
    assert outcomes == ["TimeoutError", "started"]
    assert not passkey_message(page).is_visible()  # nothing went wrong for the user


@pytest.mark.e2e
def test_autofill_comes_back_after_a_refusal(page, site, watch):
    watch.allow_http_errors()
    cdp, aid = add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    override_bits(cdp, aid, isBadUV=True)
    assert logout_into_autofill(page).status == 400
    assert_refused(page, site, watch, errors.UserVerificationRequired)
    # No loop of automatic attempts: the next request waits for the person.
    page.wait_for_timeout(1500)
    assert page.evaluate(CONDITIONAL_GETS) == 1
    assert len(site.passkey_logins("failure")) == 1

    # Back on the Identifiant field, the passkey is offered again, and logs in.
    override_bits(cdp, aid)
    with page.expect_response(lambda r: r.url.endswith("/webauthn/login/verify")) as verify:
        page.get_by_label("Identifiant", exact=True).focus()
    assert verify.value.ok
    wait_logged_in(page)
    assert len(site.passkey_logins("success")) == 1


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("transport", "hint"),
    [
        ("internal", "Votre appareil est compatible"),
        ("usb", "utilisez une clé de sécurité"),
    ],
)
def test_offer_page_says_what_this_device_can_do(page, site, watch, transport, hint):
    add_virtual_authenticator(page, transport=transport)
    assert password_login(page, site.url) == "/passkeys/offer"
    passkey_hint(page).wait_for(state="visible")
    assert hint in passkey_hint(page).inner_text()


@pytest.mark.e2e
def test_without_platform_authenticator_the_phone_is_explained(page, site, watch):
    fake_capabilities(
        page, userVerifyingPlatformAuthenticator=False, hybridTransport=True, conditionalGet=True
    )
    assert password_login(page, site.url) == "/passkeys/offer"
    for path in ("/passkeys/offer", "/account/passkeys"):
        page.goto(site.url + path)
        passkey_hint(page).wait_for(state="visible")
        text = passkey_hint(page).inner_text()
        assert "utilisez votre smartphone sans télécharger d'application" in text
        assert "QR code" in text


@pytest.mark.e2e
def test_a_crafted_removed_link_signals_nothing(page, site, watch):
    add_virtual_authenticator(page)
    enroll_from_offer(page, site.url)
    live = b64url(site.passkeys()[0].credential_id)
    page.goto(site.url + f"/account/passkeys?removed={live}")
    page.wait_for_function(ACCEPTED_SIGNALLED)
    assert [c for c in watch.calls if c["method"] == "signalUnknownCredential"] == []


@pytest.mark.e2e
def test_a_server_that_does_not_answer_does_not_leave_the_page_waiting(page, server, watch):
    page.clock.install()
    page.route("**/webauthn/login/options", lambda route: None)  # never answered
    page.goto(server.url + "/login")
    button = page.get_by_role("button", name="Se connecter sans mot de passe", exact=True)
    button.click()
    assert button.is_disabled()
    page.clock.run_for("00:31")  # each call to the server has 30 seconds
    message = passkey_message(page)
    message.wait_for(state="visible")
    assert message.inner_text().startswith("Délai dépassé")
    assert button.is_enabled()


@pytest.mark.e2e
def test_under_a_mount_point_a_passkey_is_enrolled_and_logs_in(page, make_app, smtp, watch):
    """Served under /portail (a proxy's prefix, SCRIPT_NAME): the pages' scripts reach the
    JSON API under the same prefix (a root-absolute /webauthn/… would answer 404)."""
    from werkzeug.exceptions import NotFound
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    port = free_port()
    app = make_app(AUTHSERVER_BASE_URL=f"http://localhost:{port}")
    Actions(app.test_client(), smtp).create_active_account(USERNAME)
    live = LiveServer(DispatcherMiddleware(NotFound(), {"/portail": app}), port=port).start()
    site = Site(app, live.url)
    try:
        cdp, aid = add_virtual_authenticator(page, transport="internal")
        page.goto(f"{live.url}/portail/login")
        page.get_by_label("Identifiant", exact=True).fill(USERNAME)
        page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Se connecter", exact=True).click()
        page.wait_for_url(at("/portail/passkeys/offer"))
        with page.expect_response(lambda r: r.url.endswith("/register/verify")) as enrolled:
            page.get_by_role("button", name="Activer", exact=True).click()
        assert urlsplit(enrolled.value.url).path == "/portail/webauthn/register/verify"
        page.get_by_role("button", name="Se déconnecter").wait_for()
        assert len(credentials(cdp, aid)) == 1 and len(site.passkeys()) == 1

        set_presence(cdp, aid, False)  # the login page's autofill request stays pending
        page.get_by_role("button", name="Se déconnecter").click()
        page.wait_for_url(at("/portail/login"))
        if page.evaluate(HAS_CONDITIONAL_GET):
            page.wait_for_function(CONDITIONAL_STARTED)
        set_presence(cdp, aid, True)
        with page.expect_response(lambda r: r.url.endswith("/login/verify")) as verified:
            page.get_by_role("button", name="Se connecter sans mot de passe", exact=True).click()
        assert urlsplit(verified.value.url).path == "/portail/webauthn/login/verify"
        assert verified.value.ok
        page.get_by_role("button", name="Se déconnecter").wait_for()
        assert urlsplit(page.url).path.startswith("/portail/")
        assert len(site.passkey_logins("success")) == 1
    finally:
        live.stop()
