"""The password login fast path (accounts/password_fastpath.py): the login page and the
usual successful login answered before Flask, exactly as the view answers them; everything
else handed to the view, which never counts an attempt or checks a hash a second time.

Every password login of the suite runs through it; these tests pin down what it answers
itself (its ``answered`` / ``handed`` counters) and compare its answers with the view's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from authserver.accounts.password_fastpath import PasswordFastPath
from authserver.accounts.service import HASHING_KEY
from authserver.db import get_database
from authserver.models import LoginEvent, User, utcnow
from tests.conftest import PASSWORD, csrf_of
from tests.webauthn.test_api import seed_accounts
from tests.webauthn.test_fastpath import answer, fast, fast_app  # noqa: F401

ALICE, BOB = "alice.martin", "bob.durand"
TOKEN = re.compile(r'(name="csrf-token" content=|name="csrf_token" value=)"[^"]+"')


def password_path(app: Flask) -> PasswordFastPath:
    return fast(app).password


@contextmanager
def counted(app: Flask) -> Iterator[dict[str, int]]:
    """What the password fast path answered and handed over during the block."""
    path = password_path(app)
    before = path.answered, path.handed, path.logins
    counts: dict[str, int] = {}
    yield counts
    counts["answered"] = path.answered - before[0]
    counts["handed"] = path.handed - before[1]
    counts["logins"] = path.logins - before[2]


class Hashes:
    """Counts the password checks of the app's hasher (the costly step that must run once
    per attempt, whoever answers)."""

    def __init__(self, app: Flask) -> None:
        self.hasher = app.extensions[HASHING_KEY]
        self.checks = 0
        real = self.hasher.verify

        def verify(stored: str | None, password: str) -> Any:
            self.checks += 1
            return real(stored, password)

        self.hasher.verify = verify


def warm(app: Flask) -> None:
    """The fast path answers from the worker's second request on (as the passkey one)."""
    app.test_client().get("/healthz")


def login_page(client: Any) -> Any:
    return client.get("/login")


def post_login(client: Any, username: str, password: str = PASSWORD, **extra: str) -> Any:
    token = csrf_of(login_page(client).get_data(as_text=True))
    return client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password, **extra}
    )


def login_events(app: Flask, username: str) -> list[tuple[str, str]]:
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        rows = session.scalars(
            select(LoginEvent).where(LoginEvent.user_id == user.id).order_by(LoginEvent.id)
        )
        return [(row.outcome, row.reason) for row in rows]


@pytest.fixture
def app(fast_app: Flask) -> Flask:  # noqa: F811
    """Alice and Bob, the same kind of account; the login page learnt."""
    seed_accounts(fast_app, ALICE, BOB)
    warm(fast_app)
    login_page(fast_app.test_client())
    return fast_app


def test_the_page_is_the_views_page_with_its_own_token(fast_app: Flask) -> None:  # noqa: F811
    app = fast_app
    warm(app)
    path = password_path(app)
    with counted(app) as first:
        learnt = login_page(app.test_client())
    with counted(app) as second:
        quick = login_page(app.test_client())
    assert (first, second) == (
        {"answered": 0, "handed": 1, "logins": 0},
        {"answered": 1, "handed": 0, "logins": 0},
    )
    path.fast.enabled = False
    view = login_page(app.test_client())
    path.fast.enabled = True
    assert answer(quick) == answer(view) == answer(learnt)
    tokens = {csrf_of(page.get_data(as_text=True)) for page in (learnt, quick, view)}
    assert len(tokens) == 3  # a token of its own for every page
    bodies = {TOKEN.sub("<token>", page.get_data(as_text=True)) for page in (quick, view)}
    assert len(bodies) == 1


def test_the_fast_pages_token_is_good_for_the_view(app: Flask) -> None:
    client = app.test_client()
    login_page(client)  # learnt
    token = csrf_of(login_page(client).get_data(as_text=True))
    fast(app).enabled = False
    response = client.post(
        "/login", data={"csrf_token": token, "username": ALICE, "password": PASSWORD}
    )
    assert response.status_code == 302


def test_a_browser_with_a_flask_session_or_a_query_gets_the_view(app: Flask) -> None:
    client = app.test_client()
    login_page(client)
    with counted(app) as counts:
        client.get("/login")  # the first page left its Flask session cookie (its CSRF secret)
        client.get("/login?next=/espace")
    assert counts == {"answered": 0, "handed": 2, "logins": 0}


def test_a_successful_login_is_answered_as_the_view_answers_it(app: Flask) -> None:
    """Alice's logins on the fast path, Bob's (the same account's state) through the view:
    a first browser, the same browser again, a ``next``, the passkey offer postponed."""
    path = fast(app)
    answers: dict[bool, list[dict[str, Any]]] = {}
    for enabled, username in ((True, ALICE), (False, BOB)):
        path.enabled = enabled
        client = app.test_client()
        with counted(app) as counts:
            first = post_login(client, username)
            client.post(
                "/logout",
                data={
                    "csrf_token": csrf_of(
                        client.get("/espace", follow_redirects=True).get_data(as_text=True)
                    )
                },
            )
            again = post_login(client, username, next="/espace/entreprise")
        with get_database(app).session_scope() as session:
            session.execute(
                update(User)
                .where(User.username == username)
                .values(passkey_offer_after=utcnow() + timedelta(days=1))
            )
        later = post_login(app.test_client(), username)
        answers[enabled] = [answer(first), answer(again), answer(later)]
        if enabled:
            assert counts["logins"] == 2
    assert answers[True] == answers[False]
    first, again, later = answers[True]
    assert dict(first["headers"])["Location"].startswith("/passkeys/offer?next=")
    assert "next=/espace/entreprise" in dict(again["headers"])["Location"]
    assert dict(later["headers"])["Location"] == "/establishment"  # no offer: its landing
    assert set(first["cookies"]) == {"authserver_session", "authserver_device", "authserver_flask"}
    assert login_events(app, ALICE) == login_events(app, BOB)


def test_a_wrong_password_is_counted_and_checked_once(app: Flask) -> None:
    """Handed to the view after the fast path counted the attempt and checked the hash: the
    view answers with both, and the throttle stops the account at the same attempt."""
    limit = app.config["AUTHSERVER"].throttle_account_failures
    hashes = Hashes(app)
    statuses: dict[str, list[int]] = {}
    for enabled, username in ((True, ALICE), (False, BOB)):
        fast(app).enabled = enabled
        before = hashes.checks
        with counted(app) as counts:
            statuses[username] = [
                post_login(app.test_client(), username, "not the password").status_code
                for _ in range(limit + 1)
            ]
        # One check per attempt let through; none for the throttled one.
        assert hashes.checks - before == limit
        if enabled:
            assert counts["logins"] == 0 and counts["handed"] == limit + 1
    assert statuses[ALICE] == statuses[BOB] == [401] * limit + [429]
    assert login_events(app, ALICE) == login_events(app, BOB)
    assert login_events(app, ALICE)[-1] == ("throttled", "throttled")
    # The right password is refused too while the account is throttled (an unknown browser).
    assert post_login(app.test_client(), ALICE).status_code == 429


def test_a_right_password_refunds_the_attempt(app: Flask) -> None:
    limit = app.config["AUTHSERVER"].throttle_account_failures
    for _ in range(limit - 1):
        assert post_login(app.test_client(), ALICE, "not the password").status_code == 401
    hashes = Hashes(app)
    with counted(app) as counts:
        assert post_login(app.test_client(), ALICE).status_code == 302
    assert counts["logins"] == 1 and hashes.checks == 1
    # The right password did not count as a failure: one more wrong one is still let through.
    assert post_login(app.test_client(), ALICE, "not the password").status_code == 401


def test_a_refused_account_goes_to_the_view_before_anything_is_spent(app: Flask) -> None:
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username == ALICE).values(locked_at=utcnow()))
    hashes = Hashes(app)
    with counted(app) as counts:
        response = post_login(app.test_client(), ALICE)
    assert response.status_code == 403
    assert "Votre compte est bloqué" in response.get_data(as_text=True)
    assert hashes.checks == 1  # the view's: the fast path checked nothing
    assert counts == {"answered": 1, "handed": 1, "logins": 0}  # the page; the login handed


def test_an_old_hash_is_upgraded_by_the_view_checked_once(app: Flask) -> None:
    from argon2 import PasswordHasher

    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username == ALICE).values(password_hash=old))
    hashes = Hashes(app)
    assert post_login(app.test_client(), ALICE).status_code == 302
    assert hashes.checks == 1
    with get_database(app).session_scope() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == ALICE))
    assert stored != old and "m=8192" not in (stored or "")


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"csrf_token": "forged"}, 400),
        ({"username": ""}, 400),
        ({"password": ""}, 400),
        ({"username": "nobody.here"}, 401),
        ({"remember": "1"}, 302),  # a field the page has not: the view ignores it
    ],
)
def test_anything_unusual_is_the_views(app: Flask, change: dict[str, str], status: int) -> None:
    client = app.test_client()
    data = {
        "csrf_token": csrf_of(login_page(client).get_data(as_text=True)),
        "username": ALICE,
        "password": PASSWORD,
        **change,
    }
    with counted(app) as counts:
        response = client.post("/login", data=data)
    assert response.status_code == status
    assert counts == {"answered": 0, "handed": 1, "logins": 0}


def test_a_login_form_without_its_flask_session_is_refused(app: Flask) -> None:
    token = csrf_of(login_page(app.test_client()).get_data(as_text=True))
    with counted(app) as counts:
        response = app.test_client().post(
            "/login", data={"csrf_token": token, "username": ALICE, "password": PASSWORD}
        )
    assert response.status_code == 400
    assert counts == {"answered": 0, "handed": 1, "logins": 0}
