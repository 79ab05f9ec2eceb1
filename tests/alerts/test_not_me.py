"""« Ce n'était pas moi », over HTTP: confirmation page, then everything the issue lists.

Every session ends at once, the next password login needs a reset (a link is e-mailed),
passkeys wait for review, a high-priority alert reaches the security team, and the
reported browser is no longer a known device. The link is single-use and valid 7 days.
"""

from __future__ import annotations

import hashlib
import html
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from authserver.db import get_database
from authserver.models import ActionToken, AuthSession, WebAuthnCredential, utcnow
from tests.alerts.alert_helpers import (
    EMAIL,
    SAFARI_IOS,
    USERNAME,
    account_with_first_login,
    browser,
    devices_of,
    logged_in,
    login_ok,
    logout,
    not_me_link,
    path_of,
    queued,
    received_alerts,
    security_events,
    user_row,
    wait_delivered,
)
from tests.conftest import PASSWORD, Actions, csrf_of, link_in
from tests.services import SMTPServer

ATTACKER_IP = "203.0.113.66"
NEW_PASSWORD = "un tout nouveau mot de passe 2026"
WRONG = "ce n'est pas le bon mot de passe"


class Scene:
    def __init__(self, app, smtp: SMTPServer) -> None:
        self.app = app
        self.smtp = smtp
        self.owner = account_with_first_login(app, smtp)
        self.attacker = browser(app, smtp, ua=SAFARI_IOS, ip=ATTACKER_IP)
        login_ok(self.attacker)
        (alert,) = received_alerts(app, smtp)
        self.link = not_me_link(alert)
        self.path = path_of(self.link)
        self.reporter = browser(app, smtp, ip="192.0.2.10")  # the owner's mail reader

    def confirm_page(self):
        return self.reporter.client.get(self.path)

    def confirm(self, client=None):
        client = client or self.reporter.client
        page = client.get(self.path)
        data = {}
        if page.status_code == 200:
            data["csrf_token"] = csrf_of(page.get_data(as_text=True))
        return client.post(self.path, data=data)

    def token_row(self) -> ActionToken:
        digest = hashlib.sha256(self.path.rsplit("/", 1)[1].encode()).digest()
        with get_database(self.app).session_scope() as session:
            row = session.get(ActionToken, digest)
            assert row is not None
            return row

    def set_token(self, **values) -> None:
        digest = self.token_row().id_hash
        with get_database(self.app).session_scope() as session:
            session.execute(
                update(ActionToken).where(ActionToken.id_hash == digest).values(**values)
            )


@pytest.fixture
def scene(app, smtp) -> Scene:
    return Scene(app, smtp)


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def live_sessions(app) -> list[AuthSession]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(AuthSession).where(AuthSession.revoked_at.is_(None))))


def reset_password(app, smtp: SMTPServer, actions: Actions) -> None:
    """Follow the reset link e-mailed by the report and choose NEW_PASSWORD."""
    (mail,) = queued(app, "password_reset")
    wait_delivered(app)
    reset = [
        m for m in list(smtp.messages) if "/password/reset/" in m.get_body(("plain",)).get_content()
    ]
    link = link_in(reset[-1], "/password/reset/")
    page = actions.client.get(path_of(link))
    assert page.status_code == 200
    response = actions.client.post(
        path_of(link),
        data={
            "csrf_token": csrf_of(page.get_data(as_text=True)),
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code in (200, 302), response.status_code
    assert mail.recipient == EMAIL


# --------------------------------------------------------------------------- the pages


def test_the_confirmation_page_changes_nothing(scene):
    response = scene.confirm_page()
    assert response.status_code == 200
    page = text(response)
    assert "Ce n'était pas moi" in page
    assert ATTACKER_IP in page
    assert "Confirmer : ce n'était pas moi" in page
    assert 'href="/securite"' in page
    assert scene.confirm_page().status_code == 200  # not consumed by looking
    assert scene.token_row().used_at is None
    assert logged_in(scene.attacker.client)
    assert security_events(scene.app, "not_me") == []


def test_confirming_secures_the_account(scene):
    app = scene.app
    passkey_user = user_row(app)
    with get_database(app).session_scope() as session:
        session.add(
            WebAuthnCredential(
                credential_id=b"\x01" * 16, user_id=passkey_user.id, public_key=b"k", name="Clé"
            )
        )
    assert logged_in(scene.attacker.client) and logged_in(scene.owner.client)

    response = scene.confirm()
    assert response.status_code == 200
    assert "Votre compte est sécurisé" in text(response)

    # Sessions refused at once, everywhere: the attacker's next page is the login page.
    assert not logged_in(scene.attacker.client)
    assert not logged_in(scene.owner.client)
    assert live_sessions(app) == []

    # The password no longer opens a session: a reset is required, and its link was sent.
    assert user_row(app).password_reset_required
    refused = scene.attacker.login(USERNAME, PASSWORD)
    assert refused.status_code == 403
    assert 'href="/password/forgot"' in refused.get_data(as_text=True)
    assert [m.recipient for m in queued(app, "password_reset")] == [EMAIL]

    # Passkeys wait for review.
    with get_database(app).session_scope() as session:
        assert all(p.review_required for p in session.scalars(select(WebAuthnCredential)))

    # A high-priority alert for the security team, about the reported login.
    (alert,) = security_events(app, "not_me")
    assert (alert.severity, alert.status, alert.user_id) == ("high", "open", passkey_user.id)
    assert alert.ip == ATTACKER_IP
    assert alert.details["reporter_ip"] == "192.0.2.10"
    assert alert.details["sessions_revoked"] == 2
    assert alert.details["method"] == "password"


def test_the_way_to_a_new_password_is_the_mail_already_sent(scene):
    """Issue 12: « Choisir un nouveau mot de passe » asked for the address again, though the
    report had just e-mailed the link. The page says so, and a new link needs no address."""
    response = scene.confirm()
    page = text(response)
    assert "Réinitialisation de votre mot de passe France Travail" in page
    assert "Cliquez sur son lien pour choisir votre nouveau mot de passe" in page
    assert 'href="/password/forgot"' not in response.get_data(as_text=True)
    assert "« Mes clés d'accès »" in page
    assert len(queued(scene.app, "password_reset")) == 1
    # « Recevoir un nouveau lien »: the identifiant travels in the form, no address typed.
    again = scene.reporter.client.post(
        "/password/forgot/again",
        data={"csrf_token": csrf_of(response.get_data(as_text=True)), "username": USERNAME},
    )
    assert again.status_code == 200
    assert "un e-mail contenant un lien de réinitialisation" in text(again)
    wait_delivered(scene.app)
    assert [m.recipient for m in queued(scene.app, "password_reset")] == [EMAIL, EMAIL]
    # The login page of the account says the same, with the same button.
    refused = text(scene.attacker.login(USERNAME, PASSWORD))
    assert "Réinitialisation de votre mot de passe France Travail" in refused
    assert 'action="/password/forgot/again"' in refused
    assert "Recevoir un nouveau lien" in refused


def test_a_new_link_without_the_csrf_token_is_refused(scene):
    response = scene.reporter.client.post("/password/forgot/again", data={"username": USERNAME})
    assert response.status_code == 400
    assert queued(scene.app, "password_reset") == []


def test_the_reported_browser_is_no_longer_a_known_device(scene):
    app, smtp = scene.app, scene.smtp
    owner_device, attacker_device = devices_of(app)
    scene.confirm()
    after = {d.id: d for d in devices_of(app)}
    assert set(after) == {owner_device.id, attacker_device.id}  # history kept
    assert after[owner_device.id].cookie_hash == owner_device.cookie_hash  # still trusted
    assert after[attacker_device.id].cookie_hash != attacker_device.cookie_hash
    (alert,) = security_events(app, "not_me")
    assert alert.details["devices_forgotten"] == [attacker_device.id]

    reset_password(app, smtp, scene.owner)
    alerts_before = len(queued(app, "new_device"))
    # The owner's browser is still known: no alert.
    assert scene.owner.login(USERNAME, NEW_PASSWORD).status_code == 302
    assert len(queued(app, "new_device")) == alerts_before
    # The attacker's browser (same cookie as before) is a new device again: an alert.
    assert scene.attacker.login(USERNAME, NEW_PASSWORD).status_code == 302
    assert len(queued(app, "new_device")) == alerts_before + 1


def test_the_reported_browser_now_shares_the_unknown_browsers_throttle(scene, app, smtp):
    """Before the report its failures had their own counter (a known device); now they
    count against the account for every unknown browser, while the owner's is spared."""
    scene.confirm()
    logout(scene.attacker)
    for _ in range(5):
        assert scene.attacker.login(USERNAME, WRONG).status_code == 401
    stranger = browser(app, smtp, ip="198.51.100.30")
    assert stranger.login(USERNAME, PASSWORD).status_code == 429
    assert scene.owner.login(USERNAME, PASSWORD).status_code == 403  # reset required, not 429


def test_reporting_an_earlier_login_forgets_every_browser_since(app, smtp):
    account_with_first_login(app, smtp)
    first_intruder = browser(app, smtp, ip="203.0.113.1")
    login_ok(first_intruder)
    second_intruder = browser(app, smtp, ip="203.0.113.2")
    login_ok(second_intruder)
    alerts = received_alerts(app, smtp)
    assert len(alerts) == 2
    earliest = next(m for m in alerts if "203.0.113.1" in m.get_body(("plain",)).get_content())
    owner_device, first_device, second_device = devices_of(app)
    reporter = browser(app, smtp)
    path = path_of(not_me_link(earliest))
    page = reporter.client.get(path)
    reporter.client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    (alert,) = security_events(app, "not_me")
    assert alert.details["devices_forgotten"] == [first_device.id, second_device.id]
    assert devices_of(app)[0].cookie_hash == owner_device.cookie_hash


def test_an_unknown_reported_device_forgets_every_browser(scene):
    owner_device, attacker_device = devices_of(scene.app)
    scene.set_token(data={"ip": ATTACKER_IP, "method": "password"})  # no device id
    scene.confirm()
    (alert,) = security_events(scene.app, "not_me")
    assert alert.details["devices_forgotten"] == [owner_device.id, attacker_device.id]
    assert all(
        d.cookie_hash not in (owner_device.cookie_hash, attacker_device.cookie_hash)
        for d in devices_of(scene.app)
    )


# --------------------------------------------------------------------------- the link


def test_the_link_is_single_use(scene):
    assert scene.confirm().status_code == 200
    again = scene.reporter.client.get(scene.path)
    assert again.status_code == 410
    assert "déjà été utilisé" in text(again)
    assert 'href="/password/forgot"' in again.get_data(as_text=True)
    page = scene.reporter.client.get("/securite")
    replay = scene.reporter.client.post(
        scene.path, data={"csrf_token": csrf_of(page.get_data(as_text=True))}
    )
    assert replay.status_code == 410
    assert len(security_events(scene.app, "not_me")) == 1
    assert len(queued(scene.app, "password_reset")) == 1


def test_the_link_is_valid_seven_days(scene):
    row = scene.token_row()
    assert row.expires_at - row.created_at == timedelta(days=7)
    scene.set_token(expires_at=utcnow() + timedelta(minutes=1))
    assert scene.confirm_page().status_code == 200


def test_an_expired_link_changes_nothing(scene):
    scene.set_token(expires_at=utcnow() - timedelta(seconds=1))
    page = scene.confirm_page()
    assert page.status_code == 410
    assert "a expiré" in text(page)
    csrf = csrf_of(scene.reporter.client.get("/securite").get_data(as_text=True))
    assert scene.reporter.client.post(scene.path, data={"csrf_token": csrf}).status_code == 410
    assert logged_in(scene.attacker.client)
    assert not user_row(scene.app).password_reset_required
    assert security_events(scene.app, "not_me") == []


@pytest.mark.parametrize(
    "token",
    ["inconnu", "A" * 43, "x" * 300, "%00", "a.b~c"],
)
def test_an_invalid_link_has_its_page(scene, token):
    response = scene.reporter.client.get(f"/alerts/not-me/{token}")
    assert response.status_code == 404
    page = text(response)
    assert "n'est pas valide" in page
    assert "Traceback" not in page


def test_a_link_of_another_kind_is_not_a_not_me_link(app, smtp):
    """The activation link's token, put in a not-me URL: refused, nothing changes."""
    actions = Actions(app.test_client(), smtp)
    actions.signup()
    token = actions.activation_link().rsplit("/", 1)[1]
    response = actions.client.get(f"/alerts/not-me/{token}")
    assert response.status_code == 404


def test_confirming_without_the_csrf_token_changes_nothing(scene):
    response = scene.reporter.client.post(scene.path, data={})
    assert response.status_code == 400
    assert scene.token_row().used_at is None
    assert logged_in(scene.attacker.client)
    assert security_events(scene.app, "not_me") == []


def test_passkeys_are_refused_until_their_review(app, smtp):
    from tests.webauthn.test_api import Browser, authenticator

    owner = account_with_first_login(app, smtp)
    auth = authenticator()
    Browser(owner).register(auth)
    login_ok(browser(app, smtp, ip=ATTACKER_IP))
    wait_delivered(app)
    alert = next(m for m in smtp.messages if m["Subject"].startswith("Nouvelle connexion"))
    reporter = browser(app, smtp)
    path = path_of(not_me_link(alert))
    page = reporter.client.get(path).get_data(as_text=True)
    assert reporter.client.post(path, data={"csrf_token": csrf_of(page)}).status_code == 200

    refused = Browser(browser(app, smtp, ip="198.51.100.8")).login(auth)
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "account_unavailable"
    # Issue 12: the message says what to do, not only « ne peut pas se connecter ».
    message = refused.get_json()["message"]
    assert "« Mot de passe oublié ? »" in message
    assert "« Mes clés d'accès »" in message
    assert "ne peut pas se connecter" not in message
    assert live_sessions(app) == []
