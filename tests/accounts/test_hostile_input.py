"""NUL bytes and control characters in typed values: unknown accounts, never a 500.

PostgreSQL refuses NUL in text, so such values must never reach a query; the answer is
the one an unknown account gets (no enumeration), on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from authserver.db import get_database
from authserver.models import LoginEvent, OutboxMail
from tests.accounts.queued_jobs import wait_for_mail_jobs
from tests.conftest import PASSWORD, Actions, csrf_of

CSRF_VALUES = re.compile(r'((?:name="csrf_token" value|name="csrf-token" content)=")[^"]*(")')
UNKNOWN = "personne.inconnue"
HOSTILE = [
    "martin.dupont\x00",
    "\x00",
    "martin\x00dupont",
    "martin.dupont\x1b[2J",
    "martin.dupont\u200b",
    "martin.dupont\x7f",
]
HOSTILE_EMAILS = ["martin.dupont@entreprise.fr\x00", "martin\x00.dupont@entreprise.fr"]


def normalized(response) -> str:
    return CSRF_VALUES.sub(r"\1…\2", response.get_data(as_text=True))


def mails(app) -> int:
    """E-mails queued, once the worker has handled the requests (reset, new link)."""
    wait_for_mail_jobs(app)
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(OutboxMail))


@pytest.fixture
def site(backend_app, smtp):
    """martin.dupont (active) and paul.martin (not activated yet)."""
    actions = Actions(backend_app.test_client(), smtp)
    actions.create_active_account("martin.dupont")
    assert actions.signup("paul.martin").status_code == 302
    smtp.wait_for(2)
    return backend_app


def post(app, path: str, form_page: str, **data):
    client = app.test_client()
    csrf = csrf_of(client.get(form_page).get_data(as_text=True))
    return client.post(path, data={"csrf_token": csrf, **data})


@pytest.mark.parametrize("value", HOSTILE)
def test_login_with_control_characters_is_an_unknown_account(site, value):
    unknown = post(site, "/login", "/login", username=UNKNOWN, password=PASSWORD)
    hostile = post(site, "/login", "/login", username=value, password=PASSWORD)
    assert unknown.status_code == 401
    assert hostile.status_code == unknown.status_code
    assert "Identifiant ou mot de passe incorrect." in html.unescape(normalized(hostile))
    assert "authserver_session=" not in " ".join(hostile.headers.getlist("Set-Cookie"))
    with get_database(site).session_scope() as session:
        event = session.scalars(select(LoginEvent).order_by(LoginEvent.id.desc())).first()
        assert (event.outcome, event.reason, event.user_id) == ("failure", "bad_credentials", None)
        assert "\x00" not in event.username_attempt


@pytest.mark.parametrize(
    ("path", "form_page", "field", "value"),
    [
        *[("/password/forgot", "/password/forgot", "username", v) for v in HOSTILE],
        *[("/password/forgot", "/password/forgot", "email", v) for v in HOSTILE_EMAILS],
        *[("/activate/resend", "/activate/resend", "username", v) for v in HOSTILE],
        *[("/activate/resend", "/activate/resend", "email", v) for v in HOSTILE_EMAILS],
        ("/activate/resend-from-login", "/login", "username", "paul.martin\x00"),
        ("/activate/resend-from-login", "/login", "username", "\x00"),
    ],
)
def test_lookup_forms_with_control_characters_answer_as_for_an_unknown_account(
    site, path, form_page, field, value
):
    before = mails(site)
    unknown_value = UNKNOWN if field == "username" else "personne@inconnue.fr"
    unknown = post(site, path, form_page, **{field: unknown_value})
    hostile = post(site, path, form_page, **{field: value})
    assert hostile.status_code == unknown.status_code
    assert hostile.status_code in (200, 302)
    assert hostile.headers.get("Location") == unknown.headers.get("Location")
    assert normalized(hostile) == normalized(unknown)
    assert mails(site) == before  # no e-mail to the account whose name was mangled


def test_control_characters_are_stripped_from_the_user_agent(site, smtp):
    client = site.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0\x00 (X11; Linux)\x1b[31m\x9b Firefox/133"
    actions = Actions(client, smtp)
    assert actions.login().status_code == 302
    with get_database(site).session_scope() as session:
        event = session.scalars(select(LoginEvent).order_by(LoginEvent.id.desc())).first()
        assert event.outcome == "success"
        assert event.user_agent == "Mozilla/5.0 (X11; Linux)[31m Firefox/133"
