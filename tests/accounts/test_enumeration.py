"""No answer reveals whether an identifiant or e-mail exists.

Each check sends the very same request to two servers, one where the account
exists and one where it does not, and compares the answers: status, body
(modulo the CSRF token) and which cookies are set.
"""

from __future__ import annotations

import re
import statistics
import time

import pytest
from sqlalchemy import func, select

from authserver.db import get_database
from authserver.models import OutboxMail
from tests.accounts.queued_jobs import wait_for_mail_jobs
from tests.conftest import Actions, csrf_of

CSRF_VALUES = re.compile(r'((?:name="csrf_token" value|name="csrf-token" content)=")[^"]*(")')


def normalized(response) -> str:
    return CSRF_VALUES.sub(r"\1…\2", response.get_data(as_text=True))


def cookie_names(response) -> list[str]:
    return sorted(h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie"))


def assert_same(a, b) -> None:
    assert a.status_code == b.status_code
    assert a.headers.get("Location") == b.headers.get("Location")
    assert cookie_names(a) == cookie_names(b)
    assert normalized(a) == normalized(b)


def queued(app, kind: str) -> int:
    """E-mails queued, once the worker has handled the requests (reset, new link)."""
    wait_for_mail_jobs(app)
    with get_database(app).session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(OutboxMail).where(OutboxMail.kind == kind)
        )


@pytest.fixture
def apps(make_app, smtp):
    """(with_accounts, empty): martin.dupont is active, paul.martin never activated."""
    with_accounts = make_app()
    actions = Actions(with_accounts.test_client(), smtp)
    actions.create_active_account("martin.dupont")
    assert actions.signup("paul.martin").status_code == 302
    smtp.wait_for(2)
    return with_accounts, make_app()


def post(app, path: str, form_page: str, **data):
    client = app.test_client()
    csrf = csrf_of(client.get(form_page).get_data(as_text=True))
    return client.post(path, data={"csrf_token": csrf, **data})


@pytest.mark.parametrize("username", ["martin.dupont", "paul.martin", "MARTIN.DUPONT"])
def test_login_wrong_password_vs_unknown_identifiant(apps, username):
    existing, empty = apps
    data = {"username": username, "password": "ce n'est pas le bon 2026"}
    a = post(existing, "/login", "/login", **data)
    b = post(empty, "/login", "/login", **data)
    assert a.status_code == 401
    assert_same(a, b)


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "paul.martin"},
        {"username": "martin.dupont"},
        {"email": "paul.martin@entreprise.fr"},
        {"email": "martin.dupont@entreprise.fr"},
        {"username": "paul.martin", "email": "paul.martin@entreprise.fr"},
    ],
)
def test_activation_resend(apps, fields):
    existing, empty = apps
    before = queued(existing, "activation")
    a = post(existing, "/activate/resend", "/activate/resend", **fields)
    b = post(empty, "/activate/resend", "/activate/resend", **fields)
    assert a.status_code == 200
    assert_same(a, b)
    # The answer is the same, the effect is not: only a real, inactive account gets a mail.
    expected = 1 if "paul.martin" in str(fields) else 0
    assert queued(existing, "activation") == before + expected


@pytest.mark.parametrize("username", ["paul.martin", "martin.dupont"])
def test_activation_resend_from_login(apps, username):
    existing, empty = apps
    before = queued(existing, "activation")
    a = post(existing, "/activate/resend-from-login", "/login", username=username)
    b = post(empty, "/activate/resend-from-login", "/login", username=username)
    assert a.status_code == 302
    assert_same(a, b)
    assert queued(existing, "activation") == before + (username == "paul.martin")


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "martin.dupont"},
        {"username": "Martin.Dupont"},
        {"username": "paul.martin"},
        {"email": "martin.dupont@entreprise.fr"},
    ],
)
def test_password_forgot(apps, fields):
    existing, empty = apps
    a = post(existing, "/password/forgot", "/password/forgot", **fields)
    b = post(empty, "/password/forgot", "/password/forgot", **fields)
    assert a.status_code == 200
    assert_same(a, b)
    assert queued(existing, "password_reset") == 1
    assert queued(empty, "password_reset") == 0


@pytest.mark.argon2_production_cost  # a cheap hash would hide a missing dummy hash
def test_unknown_identifiant_costs_a_password_hash(apps):
    """Unknown identifiant and wrong password take about the same time (dummy hash)."""
    existing, _ = apps
    client = existing.test_client()
    csrf = csrf_of(client.get("/login").get_data(as_text=True))

    def timed(username: str) -> float:
        start = time.perf_counter()
        response = client.post(
            "/login", data={"csrf_token": csrf, "username": username, "password": "x" * 16}
        )
        elapsed = time.perf_counter() - start
        assert response.status_code == 401
        return elapsed

    known, unknown = [], []
    for i in range(4):  # below the per-account limit
        known.append(timed("martin.dupont"))
        unknown.append(timed(f"inconnu{i}"))
    ratio = statistics.median(unknown) / statistics.median(known)
    # Without a dummy hash an unknown identifiant answers ~10x faster.
    assert 0.5 < ratio < 2, (known, unknown)
