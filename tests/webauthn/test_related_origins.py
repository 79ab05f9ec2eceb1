"""``/.well-known/webauthn`` (issue 14): sibling portal origins may use our passkeys, and a
ceremony from one of them is accepted, since both follow one setting (AUTHSERVER_ORIGINS)."""

from __future__ import annotations

from tests.alerts.console_helpers import add_user, client_as
from tests.staff_login import enrol_passkey, login_in

SIBLING = "https://recrutement.francetravail-pro.example"


def test_the_document_lists_the_accepted_origins(make_app) -> None:
    app = make_app(AUTHSERVER_ORIGINS=f"http://localhost:5000, {SIBLING}, {SIBLING}")
    response = app.test_client().get("/.well-known/webauthn")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"origins": ["http://localhost:5000", SIBLING]}
    assert "max-age" in response.headers["Cache-Control"]


def test_by_default_only_the_base_url(app) -> None:
    body = app.test_client().get("/.well-known/webauthn").get_json()
    assert body == {"origins": ["http://localhost:5000"]}


def test_a_passkey_made_on_the_portal_logs_in_from_a_sibling_origin(make_app, smtp) -> None:
    app = make_app(AUTHSERVER_ORIGINS=f"http://localhost:5000,{SIBLING}")
    add_user(app, "anne.soeur")
    auth = enrol_passkey(app, client_as(app, smtp, "anne.soeur", passkey=False))
    auth.origin = SIBLING
    login_in(app.test_client(), auth)
    auth.origin = "https://ailleurs.example"
    browser = app.test_client()
    options = browser.post("/webauthn/login/options", json={})
    refused = browser.post(
        "/webauthn/login/verify", json={"credential": auth.assert_(options.get_json())}
    )
    assert refused.status_code == 400
    assert "origin" in refused.get_json()["error"]
