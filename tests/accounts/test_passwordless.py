"""Passkey-only accounts (issue 14): a sign-up without a password whose first passkey is made
at activation; « Supprimer mon mot de passe »; and no route that leaves an account with no
way in."""

from __future__ import annotations

from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from authserver import settings_of
from authserver.db import get_database
from authserver.models import LoginEvent, User, WebAuthnCredential
from tests.accounts.test_helpdesk import act, security  # noqa: F401 (fixture)
from tests.alerts.console_helpers import add_user, client_as
from tests.conftest import PASSWORD, Actions, csrf_of
from tests.establishments.test_flow import mails_to, wait_mail
from tests.services import SMTPServer
from tests.softauthn import SoftAuthenticator
from tests.staff_login import enrol_passkey, login_in
from tests.webauthn.test_recovery import make_codes

USERNAME = "sans.motdepasse"


def user_row(app: Flask, username: str = USERNAME) -> User:
    with get_database(app).session_scope() as session:
        row = session.scalar(select(User).where(User.username == username))
        session.expunge(row)
        return row


def passwordless_signup(app: Flask, smtp: SMTPServer) -> tuple[FlaskClient, SoftAuthenticator]:
    """Sign up without a password, activate, create the passkey on the activation page."""
    actions = Actions(app.test_client(), smtp)
    response = actions.signup(USERNAME, password="", password_confirm="", passwordless="y")
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert user_row(app).password_hash is None
    page = actions.activate()
    html = unescape(page.get_data(as_text=True))
    assert "Félicitations, votre adresse e-mail a été validée !" in html
    assert "Créer ma clé d'accès" in html
    token = html.split('data-token="', 1)[1].split('"', 1)[0]
    settings = settings_of(app)
    auth = SoftAuthenticator(rp_id=settings.rp_id, origin=settings.origins[0])
    headers = {"X-CSRFToken": csrf_of(html)}
    client = actions.client
    options = client.post("/webauthn/recovery/options", json={"token": token}, headers=headers)
    assert options.status_code == 200, options.get_data(as_text=True)
    verified = client.post(
        "/webauthn/recovery/verify",
        json={"token": token, "credential": auth.register(options.get_json())},
        headers=headers,
    )
    assert verified.status_code == 200, verified.get_data(as_text=True)
    assert verified.get_json()["redirect"] == "/establishment"  # the onboarding, as any login
    return client, auth


def test_passwordless_sign_up_then_passkey_logins(app: Flask, smtp: SMTPServer) -> None:
    client, auth = passwordless_signup(app, smtp)
    assert client.get("/establishment").status_code == 200
    email = f"{USERNAME}@entreprise.fr"
    # The account's first login: no new-device alert.
    wait_mail(smtp, email, "ajoutée")
    assert mails_to(smtp, email, "Nouvelle connexion") == []
    login_in(app.test_client(), auth)
    # A password login behaves as for any account without one: refused, nothing said.
    refused = Actions(app.test_client(), smtp).login(USERNAME, PASSWORD)
    assert refused.status_code == 401
    assert "Identifiant ou mot de passe incorrect" in unescape(refused.get_data(as_text=True))
    with get_database(app).session_scope() as session:
        reasons = session.scalars(select(LoginEvent.reason).where(LoginEvent.method == "password"))
        assert list(reasons) == ["bad_credentials"]


def test_signing_up_with_a_password_still_needs_one(app: Flask, smtp: SMTPServer) -> None:
    response = Actions(app.test_client(), smtp).signup(USERNAME, password="", password_confirm="")
    assert response.status_code == 400
    assert "mot de passe" in unescape(response.get_data(as_text=True)).lower()


def _remove_password(client: FlaskClient):
    page = client.get("/account/passkeys").get_data(as_text=True)
    return client.post("/account/password/remove", data={"csrf_token": csrf_of(page)}), page


def test_remove_password_needs_a_second_way_back_and_a_passkey_reauth(
    app: Flask, smtp: SMTPServer
) -> None:
    add_user(app, USERNAME)
    client = client_as(app, smtp, USERNAME, passkey=False)
    auth = enrol_passkey(app, client)
    # One passkey, no codes: not offered, and refused if posted anyway.
    response, page = _remove_password(client)
    assert 'id="password-keep"' in page and "Supprimer mon mot de passe" not in page
    assert response.status_code == 302
    assert user_row(app).password_hash is not None
    make_codes(app, smtp, client, f"{USERNAME}@example.fr")
    # Codes made: offered; but this session's proof is a password: a passkey is asked.
    response, page = _remove_password(client)
    assert "Supprimer mon mot de passe" in page
    assert "/account/reauth" in response.headers["Location"]
    assert user_row(app).password_hash is not None
    # Logged in with the passkey: done, mailed, and the password no longer works.
    login_in(client, auth)
    smtp.clear()
    response, _ = _remove_password(client)
    assert response.headers["Location"] == "/account/passkeys"
    assert user_row(app).password_hash is None
    wait_mail(smtp, f"{USERNAME}@example.fr", "a été supprimé")
    assert Actions(app.test_client(), smtp).login(USERNAME).status_code == 401
    page = client.get("/account/passkeys").get_data(as_text=True)
    assert 'id="password-none"' in page


def test_no_route_leaves_an_account_without_a_way_in(
    app: Flask,
    smtp: SMTPServer,
    security: FlaskClient,  # noqa: F811
) -> None:
    add_user(app, USERNAME)
    client = client_as(app, smtp, USERNAME, passkey=False)
    auth = enrol_passkey(app, client)
    login_in(client, auth)
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username == USERNAME).values(password_hash=None))

    def passkeys() -> int:
        with get_database(app).session_scope() as session:
            owner = select(User.id).where(User.username == USERNAME).scalar_subquery()
            query = select(WebAuthnCredential).where(WebAuthnCredential.user_id == owner)
            return len(list(session.scalars(query)))

    # The user's own page.
    page = client.get("/account/passkeys").get_data(as_text=True)
    (passkey_id,) = [part.split('"', 1)[0] for part in page.split('data-passkey-id="')[1:]]
    client.post(f"/account/passkeys/{passkey_id}/delete", data={"csrf_token": csrf_of(page)})
    assert passkeys() == 1
    # The helpdesk, one or all.
    assert act(security, app, USERNAME, "remove_passkeys").status_code == 400
    assert act(security, app, USERNAME, "remove_passkey", passkey=passkey_id).status_code == 400
    assert passkeys() == 1
    # The password cannot be removed twice, nor recovery codes spend the last way in.
    response, _ = _remove_password(client)
    assert response.status_code == 302 and passkeys() == 1


@pytest.mark.parametrize(
    "passkeys,codes,allowed", [(1, 0, False), (2, 0, True), (1, 3, True), (0, 5, False)]
)
def test_the_password_removal_rule(passkeys: int, codes: int, allowed: bool) -> None:
    from authserver.accounts import ways_in

    assert (
        ways_in.may_remove_password(has_password=True, passkeys=passkeys, recovery_codes=codes)
        is allowed
    )
