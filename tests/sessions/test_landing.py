"""Where a login lands (issue 12: staff landed on the employer espace, « Votre espace n'est
pas certifié »): staff on their own tool, employers through onboarding to their espace.

The rule (sessions/landing.py), then over HTTP: a password login, a passkey login, « / »,
the header's link, and the administrator's « Espace équipe ».
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authserver.sessions.landing import landing_endpoint
from tests.alerts.console_helpers import add_user
from tests.conftest import Actions
from tests.staff_login import enrol_passkey, login_in

TOOLS = {"counselor": "/counselor", "security": "/security", "admin": "/staff"}


def never_asked() -> None:
    raise AssertionError("the certification query must not run")


@pytest.mark.parametrize(
    ("role", "status", "certified", "asked", "expected"),
    [
        ("counselor", None, False, None, "establishments.counselor_queue"),
        ("security", None, False, None, "security.alerts"),
        ("admin", None, False, None, "staff.home"),
        # Staff are never sent through onboarding, whatever their rows say.
        ("security", "active", True, None, "security.alerts"),
        ("employer", None, False, None, "establishments.establishment"),
        ("employer", "refused", False, None, "establishments.establishment"),
        ("employer", "pending", False, None, "establishments.pending"),
        ("employer", "active", False, None, "establishments.certification"),
        ("employer", "active", False, object(), "establishments.espace"),
        ("employer", "active", True, None, "establishments.espace"),
    ],
)
def test_the_rule(role, status, certified, asked, expected):
    query = (lambda: asked) if role == "employer" and not certified else never_asked
    assert (
        landing_endpoint(
            role=role, membership_status=status, certified=certified, certification_asked=query
        )
        == expected
    )


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def landing(response) -> str:
    """Where a password login sends the browser, past the passkey offer (its ``next``)."""
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    parts = urlsplit(response.headers["Location"])
    if parts.path == "/passkeys/offer":
        return parse_qs(parts.query)["next"][0]
    return parts.path


def staff_browser(app: Flask, smtp, role: str) -> tuple[FlaskClient, object]:
    username = f"equipe.{role}"
    add_user(app, username, role=role)
    client = app.test_client()
    response = Actions(client, smtp).login(username)
    return client, response


@pytest.mark.parametrize("role", list(TOOLS))
def test_a_staff_password_login_lands_on_the_tool_which_asks_for_a_passkey(app, smtp, role):
    client, response = staff_browser(app, smtp, role)
    target = landing(response)
    assert target == TOOLS[role]
    page = client.get(target)
    assert page.status_code == 403
    assert "Connexion par clé d'accès exigée" in text(page)
    assert "Votre espace n'est pas certifié" not in text(page)
    # « Peut-être plus tard » on the offer goes there too.
    offer = client.get(response.headers["Location"])
    assert offer.status_code == 200 and f'value="{TOOLS[role]}"' in text(offer)


@pytest.mark.parametrize("role", list(TOOLS))
def test_a_staff_passkey_login_opens_the_tool(app, smtp, role):
    client, _ = staff_browser(app, smtp, role)
    auth = enrol_passkey(app, client)
    client.post("/logout", data={"csrf_token": _csrf(client)})
    options = client.post("/webauthn/login/options", json={})
    verified = client.post(
        "/webauthn/login/verify", json={"credential": auth.assert_(options.get_json())}
    )
    assert verified.status_code == 200, verified.get_json()
    assert verified.get_json()["redirect"] == TOOLS[role]
    tool = client.get(TOOLS[role])
    assert tool.status_code == 200
    page = text(tool)
    # The header links a staff member to their tool, on every page.
    assert 'id="header-staff-tool"' in page
    assert f'href="{TOOLS[role]}"' in page
    account = text(client.get("/account"))
    assert 'id="header-staff-tool"' in account
    # « / » (the header's brand link) leads there too.
    home = client.get("/")
    assert home.status_code == 302 and urlsplit(home.headers["Location"]).path == TOOLS[role]


def _csrf(client: FlaskClient) -> str:
    from tests.conftest import csrf_of

    return csrf_of(client.get("/account/passkeys").get_data(as_text=True))


def test_the_administrators_staff_home_lists_both_tools(app, smtp):
    client, _ = staff_browser(app, smtp, "admin")
    auth = enrol_passkey(app, client)
    login_in(client, auth)
    page = client.get("/staff")
    assert page.status_code == 200
    body = text(page)
    assert "Espace équipe" in body
    assert 'href="/counselor"' in body and 'href="/security"' in body
    assert client.get("/counselor").status_code == 200
    assert client.get("/security").status_code == 200


def test_a_counselors_staff_home_lists_only_the_queue(app, smtp):
    client, _ = staff_browser(app, smtp, "counselor")
    login_in(client, enrol_passkey(app, client))
    body = text(client.get("/staff"))
    assert 'href="/counselor"' in body and 'href="/security"' not in body


def test_employers_keep_their_journey_and_get_no_staff_link(app, smtp, actions):
    actions.create_active_account("martin.dupont")
    assert landing(actions.login("martin.dupont")) == "/establishment"
    page = text(actions.client.get("/establishment"))
    assert 'id="header-staff-tool"' not in page
    assert actions.client.get("/staff").status_code == 403
    assert urlsplit(actions.client.get("/").headers["Location"]).path == "/establishment"


def test_the_staff_home_sends_anonymous_people_to_the_login_page(client):
    response = client.get("/staff")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
