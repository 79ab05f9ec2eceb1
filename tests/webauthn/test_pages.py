"""The passkey pages over HTTP: the offer after a password login and « Mes clés d'accès ».

Rename and delete only touch the user's own passkeys; deleting needs a login or a
re-authentication of the last 5 minutes and never leaves an account without a way to log
in; the offer's « Peut-être plus tard » honours AUTHSERVER_PASSKEY_OFFER_DELAY_DAYS and « Ne
plus me proposer » is for good; the Signal API only ever hears of passkeys really deleted.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select, update

from authserver.db import get_database
from authserver.models import AuthSession, User, WebAuthnCredential, utcnow
from tests.conftest import PASSWORD, csrf_of
from tests.services import SMTPServer
from tests.softauthn import b64url
from tests.webauthn.test_api import (
    OTHER,
    USER,
    Browser,
    authenticator,
    new_browser,
    passkeys,
    seed_accounts,
    seed_passkey,
    user_row,
)

SIGNAL_RE = re.compile(r'<div id="passkey-signal"[^>]*>')


def page(browser: Browser, path: str = "/account/passkeys") -> str:
    response = browser.client.get(path)
    assert response.status_code == 200, response.status_code
    return html.unescape(response.get_data(as_text=True))


def post(browser: Browser, path: str, **data: Any) -> Any:
    token = csrf_of(browser.client.get("/account/passkeys").get_data(as_text=True))
    return browser.client.post(path, data={"csrf_token": token, **data})


def signal_data(text: str) -> dict[str, str]:
    (tag,) = SIGNAL_RE.findall(text)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag))


def passkey_of(app: Flask, username: str) -> WebAuthnCredential:
    user_id = user_row(app, username).id
    (row,) = [row for row in passkeys(app) if row.user_id == user_id]
    return row


def age_the_login(app: Flask, minutes: int) -> None:
    with get_database(app).session_scope() as session:
        session.execute(
            update(AuthSession).values(authenticated_at=utcnow() - timedelta(minutes=minutes))
        )


def set_user(app: Flask, username: str = USER, **values: Any) -> None:
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username == username).values(**values))


@pytest.fixture
def two_accounts(app: Flask, smtp: SMTPServer) -> tuple[Browser, Browser]:
    """martin.dupont and claire.martin, one passkey each, both logged in with a password."""
    seed_accounts(app, USER, OTHER)
    browsers = []
    for username in (USER, OTHER):
        seed_passkey(app, authenticator(), username)
        browser = new_browser(app, smtp)
        browser.password_login(username)
        browsers.append(browser)
    return browsers[0], browsers[1]


# --------------------------------------------------------------------------- another's passkey


def test_renaming_another_users_passkey_is_refused(app, two_accounts):
    mine, _theirs = two_accounts
    theirs_row = passkey_of(app, OTHER)
    response = post(mine, f"/account/passkeys/{theirs_row.id}/rename", name="Volée")
    assert response.status_code == 302
    assert "Cette clé d'accès n'existe pas." in page(mine)
    assert passkey_of(app, OTHER).name == theirs_row.name


def test_deleting_another_users_passkey_is_refused(app, two_accounts):
    mine, _theirs = two_accounts
    theirs_row = passkey_of(app, OTHER)
    response = post(mine, f"/account/passkeys/{theirs_row.id}/delete")
    assert response.status_code == 302
    assert "Cette clé d'accès n'existe pas." in page(mine)
    assert passkey_of(app, OTHER).id == theirs_row.id
    assert len(passkeys(app)) == 2


@pytest.mark.parametrize("action", ["rename", "delete", "confirm"])
def test_a_passkey_that_does_not_exist(app, two_accounts, action):
    mine, _ = two_accounts
    response = post(mine, f"/account/passkeys/999999/{action}", name="x")
    assert response.status_code == 302
    assert "Cette clé d'accès n'existe pas." in page(mine)
    assert len(passkeys(app)) == 2


# --------------------------------------------------------------------------- rename


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("  PC du   bureau ", "PC du bureau"),
        ("PC\x00du\x00bureau", "PC du bureau"),
        ("\x1b[31mPC\x7f", "[31mPC"),
        ("PC\tdu\nbureau\r", "PC du bureau"),
        ("x" * 100, "x" * 64),
    ],
    ids=["blanks", "nul", "escape-and-delete", "tab-newline", "too-long"],
)
def test_rename_keeps_a_clean_name(backend_app, smtp, sent, stored):
    seed_accounts(backend_app, USER)
    seed_passkey(backend_app, authenticator())
    browser = new_browser(backend_app, smtp)
    browser.password_login(USER)
    row = passkey_of(backend_app, USER)
    response = post(browser, f"/account/passkeys/{row.id}/rename", name=sent)
    assert response.status_code == 302
    assert "La clé d'accès a été renommée." in page(browser)
    assert passkey_of(backend_app, USER).name == stored


@pytest.mark.parametrize("sent", ["", "   ", "\x00\x01"])
def test_rename_needs_a_name(app, two_accounts, sent):
    mine, _ = two_accounts
    row = passkey_of(app, USER)
    post(mine, f"/account/passkeys/{row.id}/rename", name=sent)
    assert "Veuillez saisir un nom pour la clé d'accès." in page(mine)
    assert passkey_of(app, USER).name == row.name


# --------------------------------------------------------------------------- delete


def test_delete_needs_a_recent_authentication(app, two_accounts):
    mine, _ = two_accounts
    row = passkey_of(app, USER)
    age_the_login(app, minutes=6)

    response = post(mine, f"/account/passkeys/{row.id}/delete")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/account/reauth"
    assert parse_qs(location.query)["next"] == ["/account/passkeys"]
    assert passkey_of(app, USER).id == row.id

    # A wrong password changes nothing.
    reauth = page(mine, "/account/reauth?next=/account/passkeys")
    assert "Confirmez votre identité" in reauth
    response = mine.client.post(
        "/account/reauth",
        data={"csrf_token": csrf_of(reauth), "password": "wrong", "next": "/account/passkeys"},
    )
    assert response.status_code == 401
    assert "Mot de passe incorrect." in html.unescape(response.get_data(as_text=True))
    assert_still_refused = post(mine, f"/account/passkeys/{row.id}/delete")
    assert urlsplit(assert_still_refused.headers["Location"]).path == "/account/reauth"

    # The right one: back to the page, and now the passkey can go.
    response = mine.client.post(
        "/account/reauth",
        data={"csrf_token": csrf_of(reauth), "password": PASSWORD, "next": "/account/passkeys"},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/account/passkeys"
    response = post(mine, f"/account/passkeys/{row.id}/delete")
    assert response.headers["Location"] == "/account/passkeys"
    assert "La clé d'accès a été supprimée." in page(mine)
    assert [r.user_id for r in passkeys(app)] == [user_row(app, OTHER).id]


def test_a_login_of_less_than_five_minutes_is_recent_enough(app, two_accounts):
    mine, _ = two_accounts
    age_the_login(app, minutes=4)
    post(mine, f"/account/passkeys/{passkey_of(app, USER).id}/delete")
    assert [r.user_id for r in passkeys(app)] == [user_row(app, OTHER).id]


def test_the_last_passkey_of_an_account_without_password_stays(app, smtp):
    seed_accounts(app, USER)
    first, second = authenticator(), authenticator()
    seed_passkey(app, first)
    seed_passkey(app, second)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    set_user(app, password_hash=None)  # e.g. an account that only ever used passkeys

    one, other = passkeys(app)
    post(browser, f"/account/passkeys/{one.id}/delete")  # another passkey remains: fine
    assert [r.id for r in passkeys(app)] == [other.id]

    response = post(browser, f"/account/passkeys/{other.id}/delete")
    assert response.status_code == 302
    text = page(browser)
    assert "Impossible de supprimer votre seule clé d'accès" in text
    assert [r.id for r in passkeys(app)] == [other.id]


def test_the_last_passkey_of_an_account_with_a_password_can_go(app, two_accounts):
    mine, _ = two_accounts
    post(mine, f"/account/passkeys/{passkey_of(app, USER).id}/delete")
    assert "Vous n'avez encore aucune clé d'accès." in page(mine)


# --------------------------------------------------------------------------- Signal API


def test_a_crafted_link_cannot_make_the_page_signal_a_live_passkey(app, two_accounts):
    mine, _ = two_accounts
    live = b64url(passkey_of(app, USER).credential_id)
    data = signal_data(page(mine, f"/account/passkeys?removed={live}"))
    assert data["removed"] == ""
    assert data["accepted"] == live


def test_a_deleted_passkey_is_signalled_once(app, smtp):
    seed_accounts(app, USER)
    keep, drop = authenticator(), authenticator()
    seed_passkey(app, keep)
    seed_passkey(app, drop)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    kept, dropped = passkeys(app)

    response = post(browser, f"/account/passkeys/{dropped.id}/delete")
    assert response.headers["Location"] == "/account/passkeys"  # nothing in the URL
    data = signal_data(page(browser))
    assert data["removed"] == b64url(dropped.credential_id)
    assert data["accepted"] == b64url(kept.credential_id)
    assert data["rp-id"] == "localhost"
    assert data["user-id"] == b64url(user_row(app).user_handle)
    # Told once: the next visit has nothing more to say.
    assert signal_data(page(browser))["removed"] == ""


def test_only_ids_that_are_no_longer_the_users_are_signalled(app, two_accounts):
    """Even what the session holds is checked against the user's passkeys."""
    from authserver.webauthn.pages import REMOVED_KEY

    mine, _ = two_accounts
    live = b64url(passkey_of(app, USER).credential_id)
    with mine.client.session_transaction() as session:
        session[REMOVED_KEY] = [
            [user_row(app, USER).id, live],
            [user_row(app, OTHER).id, "c29tZW9uZSBlbHNl"],
            [user_row(app, USER).id, "Z29uZQ"],
        ]
    assert signal_data(page(mine))["removed"] == "Z29uZQ"


# --------------------------------------------------------------------------- synced or not


@pytest.mark.parametrize(
    ("be", "bs", "label"),
    [
        (True, True, "Synchronisée entre vos appareils"),
        (True, False, "Synchronisable, pas encore sauvegardée"),
        (False, False, "Liée à un seul appareil"),
    ],
)
def test_the_list_says_synced_only_when_backed_up(app, smtp, be, bs, label):
    seed_accounts(app, USER)
    seed_passkey(app, authenticator(backup_eligible=be, backup_state=bs))
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    text = page(browser)
    labels = [
        "Synchronisée entre vos appareils",
        "Synchronisable, pas encore sauvegardée",
        "Liée à un seul appareil",
    ]
    assert [item for item in labels if item in text] == [label]


# --------------------------------------------------------------------------- the offer


def login_destination(browser: Browser) -> str:
    response = browser.actions.login(USER)
    assert response.status_code == 302
    browser._csrf = None
    return urlsplit(response.headers["Location"]).path


def offer_choice(browser: Browser, choice: str) -> Any:
    text = page(browser, "/passkeys/offer?next=/espace")
    return browser.client.post(
        f"/passkeys/offer/{choice}", data={"csrf_token": csrf_of(text), "next": "/espace"}
    )


@pytest.mark.parametrize("days", ["1", "3", "30"])
def test_later_asks_again_after_the_configured_delay(make_app, smtp, days):
    app = make_app(AUTHSERVER_PASSKEY_OFFER_DELAY_DAYS=days)
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    assert login_destination(browser) == "/passkeys/offer"
    before = utcnow()
    response = offer_choice(browser, "later")
    assert response.status_code == 302 and response.headers["Location"] == "/espace"

    user = user_row(app)
    expected = before + timedelta(days=int(days))
    assert abs((user.passkey_offer_after - expected).total_seconds()) < 60
    assert not user.passkey_offer_refused

    browser.logout()
    assert login_destination(browser) != "/passkeys/offer"  # not yet
    browser.logout()
    set_user(app, passkey_offer_after=utcnow() - timedelta(seconds=1))
    assert login_destination(browser) == "/passkeys/offer"  # the delay has passed


def test_never_stops_the_offer_but_passkeys_can_still_be_added(app, smtp):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    assert login_destination(browser) == "/passkeys/offer"
    response = offer_choice(browser, "never")
    assert response.status_code == 302 and response.headers["Location"] == "/espace"
    assert user_row(app).passkey_offer_refused
    landing = browser.client.get("/espace", follow_redirects=True).get_data(as_text=True)
    assert "nous ne vous proposerons plus" in html.unescape(landing)

    browser.logout()
    assert login_destination(browser) != "/passkeys/offer"
    # Even long after: "never" is for good.
    set_user(app, passkey_offer_after=utcnow() - timedelta(days=365))
    browser.logout()
    assert login_destination(browser) != "/passkeys/offer"

    # « Ajouter une clé d'accès » on the passkeys page still works.
    assert "Ajouter une clé d'accès" in page(browser)
    browser.register(authenticator())
    assert len(passkeys(app)) == 1


def test_the_offer_page_has_the_guides_words(app, smtp):
    """Issue 12: the guide's offer screen, contract buttons unchanged."""
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    assert login_destination(browser) == "/passkeys/offer"
    text = page(browser, "/passkeys/offer?next=/espace")
    for words in (
        "Fatigué des codes et des mots de passe ?",
        "Activez votre connexion sans mot de passe aujourd'hui",
        "ce service proposé avec notre partenaire",
        "Information sécurité",
        "France Travail ne vous demande jamais l'identifiant et le mot de passe",
    ):
        assert words in text, words
    assert re.search(r'<a[^>]*href="/connexion-sans-mot-de-passe"[^>]*>En savoir plus', text)
    for button in ("Peut-être plus tard", "Activer", "Ne plus me proposer ce moyen de connexion"):
        assert len(re.findall(rf"<button[^>]*>\s*{re.escape(button)}\s*</button>", text)) == 1


def test_the_offer_is_not_shown_to_a_user_with_a_passkey(app, smtp):
    seed_accounts(app, USER)
    seed_passkey(app, authenticator())
    browser = new_browser(app, smtp)
    assert login_destination(browser) != "/passkeys/offer"
    response = browser.client.get("/passkeys/offer?next=/espace")
    assert response.status_code == 302 and response.headers["Location"] == "/espace"


def test_offer_choices_need_a_login(client):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    for choice in ("later", "never"):
        response = client.post(f"/passkeys/offer/{choice}", data={"csrf_token": token})
        assert urlsplit(response.headers["Location"]).path == "/login"


def test_offer_choices_need_the_csrf_token(app, smtp):
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    login_destination(browser)
    assert browser.client.post("/passkeys/offer/never").status_code == 400
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username == USER))
        assert not user.passkey_offer_refused
