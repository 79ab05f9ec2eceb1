"""Staff tools need a passkey session (issue 11: a password-only session locked accounts and
certified employers; NIST SP 800-63B AAL2+, phishing-resistant)."""

from __future__ import annotations

import html

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authserver.sessions.staff import Access, decide
from tests.alerts.console_helpers import add_alert, add_user, client_as, user_of
from tests.alerts.test_console_api import bearer, create_token
from tests.conftest import csrf_of
from tests.staff_login import enrol_passkey, login_in, passkey_session


@pytest.mark.parametrize(
    ("role", "method", "roles", "expected"),
    [
        (None, None, ("security",), Access.ANONYMOUS),
        ("employer", "passkey", ("security", "admin"), Access.FORBIDDEN),
        ("security", "password", ("security", "admin"), Access.PASSKEY_REQUIRED),
        ("security", None, ("security", "admin"), Access.PASSKEY_REQUIRED),
        ("security", "passkey", ("security", "admin"), Access.ALLOWED),
        ("counselor", "password", ("counselor", "admin"), Access.PASSKEY_REQUIRED),
        ("counselor", "passkey", ("security", "admin"), Access.FORBIDDEN),
        ("admin", "passkey", ("counselor", "admin"), Access.ALLOWED),
    ],
)
def test_the_rule(role, method, roles, expected):
    assert decide(role=role, login_method=method, roles=roles) is expected


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def staff(app: Flask, smtp) -> dict[str, FlaskClient]:
    add_user(app, "equipe.securite", role="security")
    add_user(app, "camille.conseil", role="counselor")
    return {
        "security": client_as(app, smtp, "equipe.securite", passkey=False),
        "counselor": client_as(app, smtp, "camille.conseil", passkey=False),
    }


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("security", "/security"),
        ("security", "/security/events"),
        ("security", "/security/export.csv"),
        ("counselor", "/counselor"),
    ],
)
def test_a_password_session_is_sent_to_its_passkey(app, staff, who, path):
    browser = staff[who]
    response = browser.get(path)
    assert response.status_code == 403
    page = text(response)
    assert "Connexion par clé d'accès exigée" in page
    assert "Ajouter une clé d'accès" in page
    assert 'href="/account/passkeys"' in page
    # With a passkey enrolled but the session still a password one: confirm with it.
    auth = enrol_passkey(app, browser)
    page = text(browser.get(path))
    assert "Me connecter avec ma clé d'accès" in page
    login_in(browser, auth)
    assert browser.get(path).status_code == 200


def test_a_password_session_cannot_lock_an_account(app, smtp, staff):
    victim = add_user(app, "victime.b")
    alert = add_alert(app, kind="not_me", user_id=victim, ip="203.0.113.7")
    browser = staff["security"]
    token = csrf_of(browser.get("/account/passkeys").get_data(as_text=True))
    refused = browser.post(
        f"/security/alerts/{alert}/actions/lock_account", data={"csrf_token": token}
    )
    assert refused.status_code == 403
    assert user_of(app, victim).locked_at is None
    passkey_session(app, browser)
    page = browser.get(f"/security/alerts/{alert}").get_data(as_text=True)
    done = browser.post(
        f"/security/alerts/{alert}/actions/lock_account",
        data={"csrf_token": csrf_of(page), "note": "compromis"},
    )
    assert done.status_code == 303
    assert user_of(app, victim).locked_at is not None


def test_the_api_refuses_a_password_session_and_keeps_bearer_tokens(app, staff):
    browser = staff["security"]
    refused = browser.get("/api/security/events")
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "passkey_required"
    token = create_token(app, "equipe.securite", "siem")
    assert app.test_client().get("/api/security/events", headers=bearer(token)).status_code == 200
    passkey_session(app, browser)
    assert browser.get("/api/security/events").status_code == 200


def test_employers_are_not_affected(app, smtp, actions):
    actions.create_active_account("martin.dupont")
    assert actions.login("martin.dupont").status_code == 302
    assert actions.client.get("/account").status_code == 200
    assert actions.client.get("/security").status_code == 403
    assert "clé d'accès exigée" not in text(actions.client.get("/security"))
