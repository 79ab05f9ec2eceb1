"""Activation links: the e-mail, single use, expiry, new links, login before activation."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from authserver import settings_of
from authserver.db import get_database
from authserver.models import ActionToken, LoginEvent, OutboxMail, User, utcnow
from tests.accounts.queued_jobs import wait_for_mail_jobs
from tests.conftest import Actions, csrf_of, link_in, path_of
from tests.services import html_of, text_of


def count(app, model, *where) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def user_row(app, key: str = "martin.dupont") -> User:
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username_key == key))
        assert user is not None
        return user


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def token_row(app, token: str) -> ActionToken:
    with get_database(app).session_scope() as session:
        row = session.get(ActionToken, hashlib.sha256(token.encode()).digest())
        assert row is not None
        return row


def expire(app, token: str) -> None:
    with get_database(app).session_scope() as session:
        session.execute(
            update(ActionToken)
            .where(ActionToken.id_hash == hashlib.sha256(token.encode()).digest())
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def assert_offers_a_new_link(page: str) -> None:
    """The problem page carries the form that sends a new activation link."""
    form = re.search(r'<form[^>]*action="/activate/resend"[^>]*>(.*?)</form>', page, re.S)
    assert form, "no form to get a new activation link"
    assert 'name="csrf_token"' in form.group(1)
    assert re.search(r"<button[^>]*>\s*Recevoir un nouveau lien\s*</button>", form.group(1))


def test_activation_email(app, actions, smtp):
    assert actions.signup().status_code == 302
    [mail] = smtp.wait_for(1)
    assert mail["To"] == "martin.dupont@entreprise.fr"
    assert "Activez" in mail["Subject"]
    assert mail["From"] and "@" in mail["From"]
    body = text_of(mail)
    assert "Bonjour" in body
    assert "identifiant est : martin.dupont" in body  # identifiant reminder
    base = settings_of(app).base_url
    urls = re.findall(r"https?://\S+", body)
    activation = [u for u in urls if "/activate/" in u]
    assert len(activation) == 1
    assert re.fullmatch(re.escape(base) + r"/activate/[A-Za-z0-9_-]{20,}", activation[0])
    assert activation[0] in html_of(mail)
    # The link says how long it lasts: 72 h by default.
    assert "72 heures" in body


def test_token_is_stored_hashed_with_72h_expiry(app, actions):
    assert actions.signup().status_code == 302
    token = token_of(actions.activation_link())
    row = token_row(app, token)
    assert row.purpose == "activation"
    assert row.expires_at - row.created_at == timedelta(hours=72)
    with get_database(app).session_scope() as session:
        stored = session.scalars(select(ActionToken.id_hash)).all()
    assert all(token.encode() not in value for value in stored)


def test_activation_ttl_is_configurable(make_app, smtp):
    app = make_app(AUTHSERVER_ACTIVATION_TTL_HOURS="1")
    actions = Actions(app.test_client(), smtp)
    assert actions.signup().status_code == 302
    token = token_of(actions.activation_link())
    row = token_row(app, token)
    assert row.expires_at - row.created_at == timedelta(hours=1)
    assert "valable 1 heure" in text_of(smtp.messages[0])


def test_activation_activates_once(app, client, actions):
    assert actions.signup().status_code == 302
    link = actions.activation_link()
    first = client.get(path_of(link))
    assert first.status_code == 200
    assert "Félicitations, votre adresse e-mail a été validée !" in text(first)
    activated_at = user_row(app).activated_at
    assert activated_at is not None

    # Reused: a clear page, and a way to get a new link.
    again = app.test_client().get(path_of(link))
    assert again.status_code == 410
    page = text(again)
    assert "déjà été utilisé" in page
    assert "Félicitations" not in page
    assert_offers_a_new_link(again.get_data(as_text=True))
    assert "Traceback" not in page
    assert user_row(app).activated_at == activated_at


def test_expired_link_then_a_new_one_from_the_problem_page(app, client, actions, smtp):
    assert actions.signup().status_code == 302
    old = actions.activation_link()
    expire(app, token_of(old))

    expired = client.get(path_of(old))
    assert expired.status_code == 410
    page = expired.get_data(as_text=True)
    assert "a expiré" in html.unescape(page)
    assert_offers_a_new_link(page)
    assert user_row(app).activated_at is None
    assert actions.login().status_code == 403  # still not activated

    # Fill in the form of that page.
    done = client.post(
        "/activate/resend", data={"csrf_token": csrf_of(page), "username": "martin.dupont"}
    )
    assert done.status_code == 200
    assert "nouvel e-mail d'activation" in text(done)
    new = actions.activation_link(2)
    assert new != old
    assert smtp.messages[1]["To"] == "martin.dupont@entreprise.fr"

    assert client.get(path_of(old)).status_code == 410  # the expired one stays dead
    assert client.get(path_of(new)).status_code == 200
    assert actions.login().status_code == 302


def test_new_link_by_email_address(app, client, actions, smtp):
    assert actions.signup().status_code == 302
    smtp.wait_for(1)
    csrf = csrf_of(client.get("/activate/resend").get_data(as_text=True))
    done = client.post(
        "/activate/resend", data={"csrf_token": csrf, "email": "Martin.Dupont@Entreprise.fr"}
    )
    assert done.status_code == 200
    assert client.get(path_of(actions.activation_link(2))).status_code == 200


def test_no_new_link_for_an_activated_account(app, client, actions):
    actions.create_active_account()
    queued = count(app, OutboxMail)
    csrf = csrf_of(client.get("/activate/resend").get_data(as_text=True))
    done = client.post("/activate/resend", data={"csrf_token": csrf, "username": "martin.dupont"})
    assert done.status_code == 200
    wait_for_mail_jobs(app)
    assert count(app, OutboxMail) == queued


def test_resend_form_needs_identifiant_or_email(client):
    csrf = csrf_of(client.get("/activate/resend").get_data(as_text=True))
    response = client.post("/activate/resend", data={"csrf_token": csrf})
    assert response.status_code == 400
    assert "identifiant ou votre adresse e-mail" in text(response)


@pytest.mark.parametrize("token", ["inconnu", "x" * 43, "a" * 500])
def test_unknown_link(client, token):
    response = client.get(f"/activate/{token}")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "n'est pas valide" in html.unescape(page)
    assert_offers_a_new_link(page)


def test_reset_token_is_not_an_activation_token(app, client, actions, smtp):
    assert actions.signup().status_code == 302
    smtp.wait_for(1)
    csrf = csrf_of(client.get("/password/forgot").get_data(as_text=True))
    client.post("/password/forgot", data={"csrf_token": csrf, "username": "martin.dupont"})
    reset = link_in(smtp.wait_for(2)[1], "/password/reset/")
    assert client.get(f"/activate/{token_of(reset)}").status_code == 404
    assert user_row(app).activated_at is None


# --------------------------------------------------------------------------- login before


def test_login_before_activation_offers_a_new_mail(app, client, actions, smtp):
    assert actions.signup().status_code == 302
    smtp.wait_for(1)

    response = actions.login()
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "pas encore activé" in html.unescape(page)
    assert client.get_cookie("authserver_session") is None
    form = re.search(r'<form[^>]*action="(/activate/[^"]+)"[^>]*>(.*?)</form>', page, re.S)
    assert form, "no resend button"
    action, inner = form.groups()
    assert re.search(r"<button[^>]*>[^<]*(?:Renvoyer|nouvel)[^<]*</button>", inner)
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', inner))
    assert fields.get("username") == "martin.dupont"

    clicked = client.post(action, data=fields)
    assert clicked.status_code == 302
    follow = client.get(clicked.location)
    assert "e-mail d'activation" in text(follow)

    new = actions.activation_link(2)
    assert smtp.messages[1]["To"] == "martin.dupont@entreprise.fr"
    assert client.get(path_of(new)).status_code == 200
    assert actions.login().status_code == 302

    with get_database(app).session_scope() as session:
        reasons = session.scalars(
            select(LoginEvent.reason).where(LoginEvent.outcome == "failure")
        ).all()
    assert reasons == ["not_activated"]


def test_wrong_password_before_activation_reveals_nothing(app, actions, smtp):
    assert actions.signup().status_code == 302
    response = actions.login(password="pas le bon mot de passe")
    assert response.status_code == 401
    page = html.unescape(response.get_data(as_text=True))
    assert "pas encore activé" not in page
    assert "/activate/resend-from-login" not in page
    assert "Identifiant ou mot de passe incorrect." in page
