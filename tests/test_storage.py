"""The storage tests, on SQLite and on PostgreSQL (``backend_app``)."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from authserver.accounts.validation import email_key, username_key
from authserver.db import get_database
from authserver.models import AuthSession, Base, LoginEvent, OutboxMail, User, utcnow
from tests.conftest import Actions, csrf_of, link_in, path_of

CONTENDERS = 4


def logout(actions):
    """Se déconnecter from the page the user is on (the espace, or where it leads)."""
    page = actions.client.get("/espace", follow_redirects=True).get_data(as_text=True)
    return actions.client.post("/logout", data={"csrf_token": csrf_of(page)})


def logged_in(client) -> bool:
    """Whether this browser has a live session: /espace (or onboarding) rather than /login."""
    response = client.get("/espace")
    if response.status_code == 200:
        return True
    assert response.status_code in (302, 303), response.status_code
    return urlsplit(response.location).path != "/login"


def count(app, model, *where) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def race(functions) -> list:
    """Run the functions in threads released together; return their results in order."""
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)
    errors: list[BaseException] = []

    def run(index, function):
        try:
            barrier.wait(timeout=10)
            results[index] = function()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_backend(backend_app):
    expected = "sqlite" if "sqlite" in get_database(backend_app).url else "postgresql"
    assert get_database(backend_app).engine.dialect.name == expected


def test_round_trip(backend_app, smtp):
    app = backend_app
    actions = Actions(app.test_client(), smtp)
    assert actions.signup("Martin.Dupont").status_code == 302
    assert actions.activate().status_code == 200
    assert actions.login("martin.dupont").status_code == 302
    page = actions.client.get("/espace", follow_redirects=True)
    assert page.status_code == 200
    assert page.request.path != "/login"
    assert "Martin.Dupont" in page.get_data(as_text=True)
    assert logout(actions).status_code == 302
    assert not logged_in(actions.client)

    with get_database(app).session_scope() as session:
        user = session.scalar(select(User))
        assert user.username == "Martin.Dupont"
        assert user.phone == "+33712345678"
        assert user.activated_at is not None
        assert user.activated_at.tzinfo is not None  # aware UTC on both backends
        assert abs((utcnow() - user.created_at).total_seconds()) < 60
        [auth] = session.scalars(select(AuthSession)).all()
        assert auth.revoked_reason == "logout"
        assert [e.outcome for e in session.scalars(select(LoginEvent))] == ["success"]


def test_identifiant_unique_ignoring_case_in_the_database(backend_app, smtp):
    app = backend_app
    actions = Actions(app.test_client(), smtp)
    assert actions.signup("martin.dupont").status_code == 302

    # Even code that bypassed the form could not create the duplicate.
    with pytest.raises(IntegrityError), get_database(app).session_scope() as session:
        session.add(
            User(
                username="MARTIN.DUPONT",
                username_key=username_key("MARTIN.DUPONT"),
                email="autre@entreprise.fr",
                email_key=email_key("autre@entreprise.fr"),
            )
        )
    assert count(app, User) == 1

    response = actions.signup("Martin.DUPONT", email="autre@entreprise.fr")
    assert response.status_code == 409
    assert count(app, User) == 1


def test_racing_signups_for_one_identifiant(backend_app, smtp):
    app = backend_app
    clients = [app.test_client() for _ in range(CONTENDERS)]
    forms = []
    for i, client in enumerate(clients):
        forms.append(
            {
                "csrf_token": csrf_of(client.get("/signup").get_data(as_text=True)),
                "username": "Martin.Dupont" if i % 2 else "martin.dupont",
                "password": "correct horse battery staple 42",
                "password_confirm": "correct horse battery staple 42",
                "civility": "monsieur",
                "last_name": "Dupont",
                "first_name": f"Martin {i}",
                "email": f"martin{i}@entreprise.fr",
                "phone": "0712345678",
                "cgu": "y",
            }
        )

    responses = race(
        [lambda c=c, f=f: c.post("/signup", data=f) for c, f in zip(clients, forms, strict=True)]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [302] + [409] * (CONTENDERS - 1), statuses
    for response in responses:
        if response.status_code == 409:
            assert "n'est pas disponible" in response.get_data(as_text=True).replace("&#39;", "'")

    assert count(app, User) == 1
    # Only the winner's activation e-mail exists: the losers' rolled back with their account.
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User))
        mails = session.scalars(select(OutboxMail)).all()
    assert [m.recipient for m in mails] == [user.email]
    messages = smtp.wait_for(1)
    assert [m["To"] for m in messages] == [user.email]


def test_activation_link_consumed_once_under_concurrency(backend_app, smtp):
    app = backend_app
    actions = Actions(app.test_client(), smtp)
    assert actions.signup().status_code == 302
    path = path_of(actions.activation_link())
    clients = [app.test_client() for _ in range(CONTENDERS)]
    responses = race([lambda c=c: c.get(path) for c in clients])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [410] * (CONTENDERS - 1), statuses


def test_reset_link_consumed_once_under_concurrency(backend_app, smtp):
    app = backend_app
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account()
    client = app.test_client()
    csrf = csrf_of(client.get("/password/forgot").get_data(as_text=True))
    client.post("/password/forgot", data={"csrf_token": csrf, "username": "martin.dupont"})
    [reset] = [m for m in smtp.wait_for(2) if "/password/reset/" in str(m.get_body(("plain",)))]
    path = path_of(link_in(reset, "/password/reset/"))

    passwords = [f"nouveau mot de passe numéro {i}" for i in range(CONTENDERS)]
    clients = [app.test_client() for _ in range(CONTENDERS)]
    tokens = [csrf_of(c.get(path).get_data(as_text=True)) for c in clients]
    responses = race(
        [
            lambda c=c, t=t, p=p: c.post(
                path, data={"csrf_token": t, "password": p, "password_confirm": p}
            )
            for c, t, p in zip(clients, tokens, passwords, strict=True)
        ]
    )
    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [302] + [410] * (CONTENDERS - 1), statuses
    winner = passwords[statuses.index(302)]
    for password in passwords:
        expected = 302 if password == winner else 401
        assert actions.login(password=password).status_code == expected
        logout(actions)
    # One "password changed" notification, not one per contender.
    assert count(app, OutboxMail, OutboxMail.kind == "password_changed") == 1


def test_migrations_produce_exactly_the_models(backend_app):
    engine = get_database(backend_app).engine
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
