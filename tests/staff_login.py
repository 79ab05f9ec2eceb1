"""Staff browsers: the console and the counsellor pages need a passkey session (issue 11).

``passkey_session`` turns a browser logged in with a password into one logged in with a
passkey, as a staff member does: « Ajouter une clé d'accès » right after the password login,
then « Se connecter sans mot de passe » in the same browser. Real ceremonies, over HTTP.
"""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from authserver import settings_of
from tests.conftest import csrf_of
from tests.softauthn import SoftAuthenticator


def passkey_session(app: Flask, client: FlaskClient) -> SoftAuthenticator:
    """Enrol a passkey for the logged-in user of ``client`` and log in again with it."""
    auth = enrol_passkey(app, client)
    login_in(client, auth)
    return auth


def enrol_passkey(app: Flask, client: FlaskClient) -> SoftAuthenticator:
    """« Ajouter une clé d'accès » in this logged-in browser (its login must be recent)."""
    settings = settings_of(app)
    auth = SoftAuthenticator(rp_id=settings.rp_id, origin=settings.origins[0])
    token = csrf_of(client.get("/account/passkeys").get_data(as_text=True))
    headers = {"X-CSRFToken": token}
    options = client.post("/webauthn/register/options", json={}, headers=headers)
    assert options.status_code == 200, options.get_data(as_text=True)
    created = client.post(
        "/webauthn/register/verify",
        json={"credential": auth.register(options.get_json())},
        headers=headers,
    )
    assert created.status_code == 200, created.get_data(as_text=True)
    return auth


def login_in(client: FlaskClient, auth: SoftAuthenticator, username: str | None = None) -> None:
    """A whole passkey login in this browser (discoverable, or username-first)."""
    body = {} if username is None else {"username": username}
    options = client.post("/webauthn/login/options", json=body)
    assert options.status_code == 200, options.get_data(as_text=True)
    verified = client.post(
        "/webauthn/login/verify", json={"credential": auth.assert_(options.get_json())}
    )
    assert verified.status_code == 200, verified.get_data(as_text=True)
