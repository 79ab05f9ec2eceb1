"""The other security e-mails (passkey added or removed, password changed, account
throttled) and the public « Information sécurité » page every alert links to."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from authserver.db import get_database
from authserver.models import WebAuthnCredential
from tests.alerts.alert_helpers import (
    BASE_URL,
    EMAIL,
    USERNAME,
    account_with_first_login,
    browser,
    html_links,
    login_ok,
    path_of,
    queued,
    received,
    security_events,
    wait_delivered,
)
from tests.conftest import PASSWORD, Actions, csrf_of, link_in
from tests.services import SMTPServer, html_of, text_of

SECURITY_PAGE = f"{BASE_URL}/securite"
FORGOT = f"{BASE_URL}/password/forgot"
WRONG = "ce n'est pas le bon mot de passe"
NEW_PASSWORD = "un tout nouveau mot de passe 2026"
PARIS_TIME = re.compile(r"\d\d/\d\d/\d{4} à \d\d:\d\d \(heure de Paris\)")

ADDED = "Une clé d'accès a été ajoutée à votre compte France Travail"
REMOVED = "Une clé d'accès a été supprimée de votre compte France Travail"
PASSWORD_CHANGED = "Votre mot de passe France Travail a été modifié"
THROTTLED = "Tentatives de connexion bloquées sur votre compte France Travail"
NEW_DEVICE = "Nouvelle connexion à votre espace France Travail"


def only(smtp: SMTPServer, subject: str):
    messages = received(smtp, subject)
    assert len(messages) == 1, [m["Subject"] for m in smtp.messages]
    return messages[0]


def register_passkey(actions: Actions):
    from tests.webauthn.test_api import Browser, authenticator

    return Browser(actions).register(authenticator(), name="Mon téléphone")


def delete_passkey(actions: Actions, passkey_id: int) -> None:
    page = actions.client.get("/account/passkeys").get_data(as_text=True)
    response = actions.client.post(
        f"/account/passkeys/{passkey_id}/delete", data={"csrf_token": csrf_of(page)}
    )
    assert response.status_code == 302


def reset_password(app, smtp: SMTPServer, actions: Actions) -> None:
    page = actions.client.get("/password/forgot").get_data(as_text=True)
    actions.client.post(
        "/password/forgot", data={"csrf_token": csrf_of(page), "username": USERNAME}
    )
    wait_delivered(app)
    mail = next(m for m in smtp.messages if "/password/reset/" in text_of(m))
    link = path_of(link_in(mail, "/password/reset/"))
    form = actions.client.get(link).get_data(as_text=True)
    response = actions.client.post(
        link,
        data={
            "csrf_token": csrf_of(form),
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code in (200, 302)


def throttle(app, smtp: SMTPServer) -> Actions:
    attacker = browser(app, smtp, ip="198.51.100.23")
    for _ in range(5):
        assert attacker.login(USERNAME, WRONG).status_code == 401
    return attacker


# --------------------------------------------------------------------------- the e-mails


def test_passkey_added_then_removed(app, smtp):
    owner = account_with_first_login(app, smtp)
    register_passkey(owner)
    wait_delivered(app)
    added = only(smtp, ADDED)
    assert added["To"] == EMAIL
    text = text_of(added)
    assert "« Mon téléphone »" in text and USERNAME in text
    assert PARIS_TIME.search(text) and "192.0.2.10" in text
    assert "changez immédiatement votre mot de passe" in text
    assert {FORGOT, f"{BASE_URL}/account/passkeys", SECURITY_PAGE} <= set(html_links(added))

    delete_passkey(owner, _row_id(app))
    wait_delivered(app)
    removed = only(smtp, REMOVED)
    assert "La clé d'accès « Mon téléphone » a été supprimée" in text_of(removed)
    assert SECURITY_PAGE in text_of(removed)


def _row_id(app) -> int:
    """The one passkey's row id (the API answers with the credential id)."""
    with get_database(app).session_scope() as session:
        return session.scalar(select(WebAuthnCredential.id))


def test_password_changed(app, smtp):
    owner = account_with_first_login(app, smtp)
    reset_password(app, smtp, owner)
    wait_delivered(app)
    changed = only(smtp, PASSWORD_CHANGED)
    text = text_of(changed)
    assert changed["To"] == EMAIL
    assert PARIS_TIME.search(text)
    assert "toutes vos sessions ouvertes ont été fermées" in text
    assert FORGOT in text and SECURITY_PAGE in text
    assert "a été modifié" in html_of(changed)


def test_throttled_once_with_what_to_do(app, smtp):
    account_with_first_login(app, smtp)
    attacker = throttle(app, smtp)
    for _ in range(3):  # refused before the password is looked at: no further mail
        assert attacker.login(USERNAME, PASSWORD).status_code == 429
    wait_delivered(app)
    message = only(smtp, THROTTLED)
    text = text_of(message)
    assert "198.51.100.23" in text and PARIS_TIME.search(text)
    assert "pendant 15 minutes" in text
    # Issue 12: what still works, said plainly (and in the HTML part too).
    assert "votre navigateur habituel" in text and "n'est pas bloqué" in text
    assert "vos clés d'accès fonctionnent toujours" in text
    assert "vos clés d'accès fonctionnent toujours" in html.unescape(html_of(message))
    assert "minute(s)" not in text
    assert FORGOT in text and SECURITY_PAGE in text
    assert len(queued(app, "throttled")) == 1
    (alert,) = security_events(app, "throttled")
    assert (alert.severity, alert.ip) == ("medium", "198.51.100.23")


def test_every_security_email_has_both_parts_and_links_the_security_page(app, smtp):
    owner = account_with_first_login(app, smtp)
    login_ok(browser(app, smtp, ip="203.0.113.70"))  # new device
    register_passkey(owner)
    delete_passkey(owner, _row_id(app))
    throttle(app, smtp)
    reset_password(app, smtp, owner)
    wait_delivered(app)
    for subject in (NEW_DEVICE, ADDED, REMOVED, THROTTLED, PASSWORD_CHANGED):
        message = only(smtp, subject)
        assert message.get_body(("plain",)) is not None and message.get_body(("html",))
        assert SECURITY_PAGE in text_of(message), subject
        assert SECURITY_PAGE in html_links(message), subject


# --------------------------------------------------------------------------- the page

SEED = [
    "Soyez vigilant : France Travail ne vous demande jamais l'identifiant et le mot de passe "
    "de votre espace, que ce soit par e-mail, courrier ou téléphone, même pour des actions de "
    "sécurisation.",
    "il s'agit d'un courriel frauduleux, également appelé tentative d'hameçonnage",
    "Que faire si vous avez reçu un courriel frauduleux ?",
    "Ne répondez pas au courriel et ne fournissez pas les données qui vous sont demandées.",
    "Supprimez le courriel frauduleux de votre boîte de messages.",
    "Que faire si vous avez reçu un e-mail intitulé « Nouvelle connexion à votre espace "
    "France Travail » ?",
    "L'ordinateur ou le téléphone utilisé à la connexion a fait l'objet d'une suppression des "
    "cookies",
    "En dehors de ces situations, il peut s'agir d'un fraudeur qui tente d'accéder à votre "
    "espace personnel.",
    "En cas de doute :",
    "Changez immédiatement votre mot de passe de connexion.",
]


@pytest.mark.parametrize("logged_in", [False, True])
def test_the_security_page_is_public_and_says_the_seed(app, smtp, logged_in):
    visitor = account_with_first_login(app, smtp) if logged_in else browser(app, smtp)
    response = visitor.client.get("/securite")
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    flat = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    for sentence in SEED:
        assert sentence in flat, sentence
    assert re.search(
        r'<a[^>]*href="/password/forgot"[^>]*>\s*Changez immédiatement votre mot de passe', page
    )
    assert "<title>" in page and "Information sécurité" in page
