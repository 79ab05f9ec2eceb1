"""Forgotten password: the e-mail, the new password, sessions revoked, single use, expiry."""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import time
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, update

from authserver import settings_of
from authserver.db import get_database
from authserver.models import ActionToken, AuthSession, OutboxMail, User, utcnow
from tests.accounts.queued_jobs import wait_for_mail_jobs
from tests.conftest import Actions, csrf_of, link_in, path_of
from tests.services import html_of, text_of

NEW_PASSWORD = "un tout nouveau mot de passe 2026"


def logged_in(client) -> bool:
    """Whether this browser has a live session: /espace (or onboarding) rather than /login."""
    response = client.get("/espace")
    if response.status_code == 200:
        return True
    assert response.status_code in (302, 303), response.status_code
    return urlsplit(response.location).path != "/login"


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def user_row(app, key: str = "martin.dupont") -> User:
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username_key == key))
        assert user is not None
        return user


def token_hash(link: str) -> bytes:
    return hashlib.sha256(link.rsplit("/", 1)[1].encode()).digest()


def mails(app, kind: str) -> int:
    """E-mails queued, once the worker has handled the reset requests."""
    wait_for_mail_jobs(app)
    with get_database(app).session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(OutboxMail).where(OutboxMail.kind == kind)
        )


def ask_reset(client, **fields) -> object:
    csrf = csrf_of(client.get("/password/forgot").get_data(as_text=True))
    return client.post("/password/forgot", data={"csrf_token": csrf, **fields})


def choose(client, link: str, password: str, confirm: str | None = None) -> object:
    path = path_of(link)
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return client.post(
        path,
        data={
            "csrf_token": csrf_of(page.get_data(as_text=True)),
            "password": password,
            "password_confirm": password if confirm is None else confirm,
        },
    )


@pytest.fixture
def account(actions, smtp) -> Actions:
    """An activated account; the activation mail is message 1."""
    actions.create_active_account()
    return actions


def nth_mail(
    smtp, predicate: Callable[[EmailMessage], bool], n: int = 1, timeout: float = 10.0
) -> EmailMessage:
    """The n-th received message matching ``predicate`` (alerts may interleave)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in list(smtp.messages) if predicate(m)]
        if len(found) >= n:
            return found[n - 1]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            subjects = [m["Subject"] for m in smtp.messages]
            raise AssertionError(f"mail n°{n} not received; got {subjects}")
        with contextlib.suppress(AssertionError):
            smtp.wait_for(len(smtp.messages) + 1, timeout=min(remaining, 0.5))


def is_reset(message: EmailMessage) -> bool:
    return "/password/reset/" in text_of(message)


def reset_link(smtp, number: int = 1) -> str:
    """The link of the n-th password-reset e-mail."""
    return link_in(nth_mail(smtp, is_reset, number), "/password/reset/")


def test_forgot_page(client):
    page = client.get("/password/forgot").get_data(as_text=True)
    assert re.search(r'<label[^>]*for="username"[^>]*>\s*Identifiant\s*</label>', page)
    assert re.search(r'<label[^>]*for="email"[^>]*>\s*Adresse e-mail\s*</label>', page)


def test_reset_flow_revokes_every_session_and_notifies(app, make_app, account, smtp):
    client = account.client
    # Another browser is logged in before the reset.
    other = Actions(app.test_client(), smtp)
    assert other.login().status_code == 302
    assert logged_in(other.client)
    # And this one too.
    assert account.login().status_code == 302

    done = ask_reset(app.test_client(), username="martin.dupont")
    assert done.status_code == 200
    assert "Si un compte correspond" in text(done)

    mail = nth_mail(smtp, is_reset)
    assert mail["To"] == "martin.dupont@entreprise.fr"
    body = text_of(mail)
    base = settings_of(app).base_url
    urls = re.findall(r"https?://\S+", body)
    resets = [u for u in urls if "/password/reset/" in u]
    assert len(resets) == 1
    assert re.fullmatch(re.escape(base) + r"/password/reset/[A-Za-z0-9_-]{20,}", resets[0])
    assert resets[0] in html_of(mail)
    assert "martin.dupont" in body

    # The link alone changes nothing yet.
    assert logged_in(other.client)

    response = choose(app.test_client(), resets[0], NEW_PASSWORD)
    assert response.status_code == 302
    assert response.location == "/login"

    # Every existing session is revoked, server-side.
    assert not logged_in(other.client)
    assert not logged_in(client)
    with get_database(app).session_scope() as session:
        sessions = session.scalars(select(AuthSession)).all()
    assert len(sessions) == 2
    assert all(s.revoked_at is not None and s.revoked_reason == "password_reset" for s in sessions)

    # Old password refused, new one accepted.
    assert account.login().status_code == 401
    assert account.login(password=NEW_PASSWORD).status_code == 302
    assert logged_in(client)

    # A notification that the password changed.
    notice = nth_mail(smtp, lambda m: "modifié" in m["Subject"])
    assert notice["To"] == "martin.dupont@entreprise.fr"
    assert "modifié" in notice["Subject"]
    notice_body = text_of(notice)
    assert "martin.dupont" in notice_body
    assert "/password/reset/" not in notice_body
    assert base + "/password/forgot" in notice_body
    assert user_row(app).password_changed_at is not None


def test_reset_by_email_address(account, smtp):
    assert ask_reset(account.client, email="MARTIN.DUPONT@entreprise.fr").status_code == 200
    link = reset_link(smtp)
    assert choose(account.client, link, NEW_PASSWORD).status_code == 302
    assert account.login(password=NEW_PASSWORD).status_code == 302


def test_link_is_single_use(app, account, smtp):
    ask_reset(account.client, username="martin.dupont")
    link = reset_link(smtp)
    assert choose(account.client, link, NEW_PASSWORD).status_code == 302

    again = app.test_client().get(path_of(link))
    assert again.status_code == 410
    page = text(again)
    assert "déjà été utilisé" in page
    assert re.search(r'href="/password/forgot"[^>]*>\s*Demander un nouveau lien', page)
    # Posting to it does nothing either.
    client = app.test_client()
    csrf = csrf_of(client.get("/password/forgot").get_data(as_text=True))
    post = client.post(
        path_of(link),
        data={"csrf_token": csrf, "password": "encore un autre 2026 !", "password_confirm": "x"},
    )
    assert post.status_code == 410
    assert account.login(password=NEW_PASSWORD).status_code == 302


def test_link_expires_after_one_hour(app, account, smtp):
    ask_reset(account.client, username="martin.dupont")
    link = reset_link(smtp)
    with get_database(app).session_scope() as session:
        row = session.get(ActionToken, token_hash(link))
        assert row.purpose == "password_reset"
        assert row.expires_at - row.created_at == timedelta(hours=1)
    assert "60 minutes" in text_of(nth_mail(smtp, is_reset))

    # The form was opened in time, the password is sent too late.
    client = app.test_client()
    page = client.get(path_of(link))
    assert page.status_code == 200
    with get_database(app).session_scope() as session:
        session.execute(
            update(ActionToken)
            .where(ActionToken.id_hash == token_hash(link))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    late = client.post(
        path_of(link),
        data={
            "csrf_token": csrf_of(page.get_data(as_text=True)),
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        },
    )
    assert late.status_code == 410
    assert "a expiré" in text(late)
    assert client.get(path_of(link)).status_code == 410
    assert account.login(password=NEW_PASSWORD).status_code == 401
    assert account.login().status_code == 302


def test_a_new_request_supersedes_the_previous_link(account, smtp):
    ask_reset(account.client, username="martin.dupont")
    first = reset_link(smtp)
    ask_reset(account.client, username="martin.dupont")
    second = reset_link(smtp, 2)
    assert first != second
    assert account.client.get(path_of(first)).status_code == 410
    assert choose(account.client, second, NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("password", "confirm", "field", "message"),
    [
        ("court 2026", None, "password", "au moins 12 caractères"),
        ("password1234", None, "password", "trop courant"),
        ("moi c'est MARTIN.DUPONT", None, "password", "votre identifiant"),
        (NEW_PASSWORD, NEW_PASSWORD + ".", "password_confirm", "ne sont pas identiques"),
        ("", None, "password", "mot de passe"),
    ],
)
def test_new_password_follows_the_same_rules(app, account, smtp, password, confirm, field, message):
    ask_reset(account.client, username="martin.dupont")
    link = reset_link(smtp)
    response = choose(app.test_client(), link, password, confirm)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(rf'id="{field}-error"[^>]*>(.*?)</', page, re.S)
    assert error and message in html.unescape(error.group(1))
    if password:
        assert password not in html.unescape(page)
    # A refused attempt does not use the link up, nor change anything.
    assert account.login().status_code == 302
    assert choose(app.test_client(), link, NEW_PASSWORD).status_code == 302


def test_unknown_link(client):
    response = client.get("/password/reset/nimportequoi")
    assert response.status_code == 404
    assert "n'est pas valide" in text(response)
    assert 'href="/password/forgot"' in response.get_data(as_text=True)


def test_activation_link_is_not_a_reset_link(account, smtp):
    activation = link_in(smtp.wait_for(1)[0], "/activate/")
    token = activation.rsplit("/", 1)[1]
    assert account.client.get(f"/password/reset/{token}").status_code in (404, 410)


def test_forgot_needs_identifiant_or_email(app, client):
    csrf = csrf_of(client.get("/password/forgot").get_data(as_text=True))
    response = client.post("/password/forgot", data={"csrf_token": csrf})
    assert response.status_code == 400
    assert "identifiant ou votre adresse e-mail" in text(response)
    assert mails(app, "password_reset") == 0


def test_reset_mails_per_account_are_limited(app, account):
    for _ in range(8):
        assert ask_reset(account.client, username="martin.dupont").status_code == 200
    sent = mails(app, "password_reset")
    assert 1 <= sent < 8  # no mail bombing through the form
    assert account.login().status_code == 302  # the account keeps its password


def test_a_password_change_expires_pending_reset_links(app, account, smtp):
    """Wherever the password hash changes (service.set_password_hash), old links stop."""
    from authserver import db
    from authserver.accounts import service

    assert ask_reset(account.client, username="martin.dupont").status_code == 200
    [message] = [m for m in smtp.wait_for(2) if "/password/reset/" in text_of(m)]
    link = link_in(message, "/password/reset/")
    with app.test_request_context():
        user = db.session().scalar(select(User).where(User.username_key == "martin.dupont"))
        new_hash = service.hashing().hash(NEW_PASSWORD)
        service.set_password_hash(user, new_hash, reason="password_change")
        db.session().commit()
    response = account.client.get(path_of(link))
    assert response.status_code == 410
    assert "expiré" in text(response)
