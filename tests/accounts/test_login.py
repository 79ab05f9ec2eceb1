"""Password login over HTTP: the page, outcomes, messages, login events, rehash."""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import select, update

from authserver import settings_of
from authserver.accounts.passwords import normalize
from authserver.db import get_database
from authserver.models import AuthSession, LoginEvent, User, utcnow
from tests.conftest import PASSWORD, Actions, csrf_of

BAD = "Identifiant ou mot de passe incorrect."


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


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def destination(location: str) -> str:
    """Where a successful login leads, past the optional passkey offer."""
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    if parts.path == "/passkeys/offer":
        return parse_qs(parts.query)["next"][0]
    return location


def events(app) -> list[LoginEvent]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(LoginEvent).order_by(LoginEvent.id)))


def user_row(app, key: str = "martin.dupont") -> User:
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username_key == key))
        assert user is not None
        return user


def set_user(app, key: str = "martin.dupont", **values) -> None:
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username_key == key).values(**values))


def test_login_page_has_the_contract_fields(client):
    page = client.get("/login").get_data(as_text=True)
    assert "Connexion entreprise" in page
    username = re.search(r'<input[^>]*\bid="username"[^>]*>', page)
    assert username and 'autocomplete="username webauthn"' in username.group(0)
    assert re.search(r'<label[^>]*for="username"[^>]*>\s*Identifiant\s*</label>', page)
    assert re.search(r'<label[^>]*for="password"[^>]*>\s*Mot de passe\s*</label>', page)
    assert re.search(r"<button[^>]*>\s*Se connecter\s*</button>", page)
    assert re.search(r"<button[^>]*>\s*Se connecter sans mot de passe\s*</button>", page)
    assert re.search(r'<a[^>]*href="/password/forgot"[^>]*>\s*Mot de passe oublié \?\s*</a>', page)
    assert re.search(r'<a[^>]*href="/signup"[^>]*>\s*Créer mon compte\s*</a>', page)


def test_login_page_has_the_guides_words_around_the_contract_labels(client):
    """Issue 12: « Identifiant France Travail », « Annuler », « En savoir plus » and the
    partner, as in the guide's screen, without renaming a contract label."""
    page = client.get("/login").get_data(as_text=True)
    text = html.unescape(page)
    # The hint is outside the label, tied to the field by aria-describedby.
    hint = re.search(r'<p class="fr-hint-text" id="username-hint">([^<]*)</p>', text)
    assert hint and "Votre identifiant France Travail" in hint.group(1)
    assert re.search(r'<input[^>]*id="username"[^>]*aria-describedby="username-hint"', page)
    assert "proposé par notre partenaire" in text
    about = re.search(r'<a[^>]*href="(/[^"]*)"[^>]*>En savoir plus', text)
    assert about and about.group(1) == "/connexion-sans-mot-de-passe"
    assert re.search(r'<a class="fr-btn fr-btn--secondary" href="/login">Annuler</a>', page)
    learn = html.unescape(client.get(about.group(1)).get_data(as_text=True))
    assert "La connexion sans mot de passe" in learn
    assert "empreinte digitale" in learn and "notre partenaire" in learn


def test_success_opens_a_session_and_records_the_event(app, client, actions):
    actions.create_active_account()
    client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
    response = actions.login()
    assert response.status_code == 302
    assert destination(response.location).startswith("/")
    assert client.get_cookie("authserver_session") is not None
    page = client.get("/espace", follow_redirects=True)
    assert page.status_code == 200
    assert page.request.path != "/login"
    assert "martin.dupont" in page.get_data(as_text=True)  # who is logged in

    [event] = events(app)
    user = user_row(app)
    assert (event.user_id, event.method, event.outcome) == (user.id, "password", "success")
    assert event.ip == "127.0.0.1"
    assert "Firefox" in event.user_agent
    assert event.created_at <= utcnow()
    assert event.device_id is not None


def test_wrong_password_and_unknown_identifiant_get_the_same_message(app, client, actions):
    actions.create_active_account()
    wrong = actions.login(password="pas le bon mot de passe")
    unknown = actions.login(username="personne.inconnue", password="pas le bon mot de passe")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert BAD in text(response)
        assert client.get_cookie("authserver_session") is None
    assert not logged_in(client)

    first, second = events(app)
    assert (first.outcome, first.reason, first.user_id) == (
        "failure",
        "bad_credentials",
        user_row(app).id,
    )
    assert (second.outcome, second.reason, second.user_id) == ("failure", "bad_credentials", None)
    assert second.username_attempt == "personne.inconnue"
    assert {first.method, second.method} == {"password"}
    assert first.ip == second.ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("username", "password", "kept"),
    [
        ("", PASSWORD, "(invalide)"),
        ("martin.dupont", "", "martin.dupont"),
        ("x" * 300, PASSWORD, "(invalide)"),
    ],
)
def test_a_malformed_attempt_is_recorded_too(app, actions, username, password, kept):
    actions.create_active_account()
    assert actions.login(username, password).status_code == 400
    [event] = events(app)
    assert (event.method, event.outcome, event.reason) == ("password", "failure", "invalid_input")
    assert event.username_attempt == kept
    assert event.user_id == (user_row(app).id if kept == "martin.dupont" else None)


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("personne.inconnue", "personne.inconnue"),
        ("Contact@Entreprise.fr", "Contact@Entreprise.fr"),
        ("Mon$ecret!Mot2Passe", "(invalide)"),  # a password typed in the identifiant field
        ("mon mot de passe secret", "(invalide)"),
        ("ab", "(invalide)"),
        ("a" * 65, "(invalide)"),
    ],
)
def test_an_unknown_identifiant_is_kept_only_if_it_looks_like_one(app, actions, typed, kept):
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("authserver.security").addHandler(handler)
    try:
        assert actions.login(typed, "pas le bon mot de passe").status_code == 401
    finally:
        logging.getLogger("authserver.security").removeHandler(handler)
    [event] = events(app)
    assert event.username_attempt == kept
    security_log = "\n".join(lines)
    assert '"username_attempt"' in security_log
    if kept != typed:
        assert typed not in security_log


def test_every_outcome_is_recorded(app, actions, smtp):
    actions.create_active_account()
    assert actions.signup("paul.martin").status_code == 302  # never activated
    assert actions.login().status_code == 302
    assert actions.login(password="mauvais mot de passe").status_code == 401
    assert actions.login("paul.martin").status_code == 403
    set_user(app, "martin.dupont", locked_at=utcnow())
    assert actions.login().status_code == 403
    outcomes = [(e.outcome, e.reason) for e in events(app)]
    assert outcomes == [
        ("success", ""),
        ("failure", "bad_credentials"),
        ("failure", "not_activated"),
        ("failure", "locked"),
    ]
    # No secret ends up in the events.
    for event in events(app):
        assert PASSWORD not in (event.username_attempt + event.user_agent + event.reason)


def test_identifiant_ignores_case_and_surrounding_spaces(actions):
    actions.create_active_account("Martin.Dupont")
    assert actions.login("MARTIN.DUPONT").status_code == 302
    logout(actions)
    assert actions.login("  martin.dupont  ").status_code == 302


def test_password_is_exact(actions):
    actions.create_active_account()
    assert actions.login(password=PASSWORD.upper()).status_code == 401
    assert actions.login(password=PASSWORD + " ").status_code == 401
    assert actions.login(password=PASSWORD[:-1]).status_code == 401


def test_failed_form_keeps_identifiant_not_password(actions):
    actions.create_active_account()
    response = actions.login(password="mauvais mot de passe")
    page = response.get_data(as_text=True)
    field = re.search(r'<input[^>]*name="username"[^>]*>', page).group(0)
    assert 'value="martin.dupont"' in field
    field = re.search(r'<input[^>]*name="password"[^>]*>', page).group(0)
    assert "value=" not in field
    assert "mauvais mot de passe" not in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"username": "", "password": PASSWORD}, "username", "Veuillez saisir votre identifiant"),
        ({"username": "martin.dupont", "password": ""}, "password", "Veuillez saisir votre mot"),
    ],
)
def test_empty_fields(app, client, data, field, message):
    csrf = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": csrf, **data})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(rf'id="{field}-error"[^>]*>(.*?)<', page, re.S)
    assert error and message in html.unescape(error.group(1))
    # Still an attempt (the issue: every attempt is recorded), marked as malformed.
    assert [(e.outcome, e.reason) for e in events(app)] == [("failure", "invalid_input")]


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/espace?onglet=services", "/espace?onglet=services"),
        ("/securite", "/securite"),
        ("https://pirate.example/", None),
        ("//pirate.example/", None),
        ("/\\pirate.example", None),
        ("javascript:alert(1)", None),
        ("pirate.example", None),
    ],
)
def test_next_stays_on_this_site(app, smtp, actions, next_url, expected):
    actions.create_active_account()
    default = destination(Actions(app.test_client(), smtp).login().location)
    assert default.startswith("/") and not default.startswith("//")
    response = actions.login(next=next_url)
    assert response.status_code == 302
    # None: the unsafe target is ignored, the user lands where any login leads.
    assert destination(response.location) == (expected or default)


def test_login_required_page_sends_to_login_and_back(client, actions):
    actions.create_active_account()
    response = client.get("/espace")
    assert response.status_code == 302
    assert response.location.startswith("/login")
    assert "next=" in response.location
    page = client.get(response.location).get_data(as_text=True)
    next_field = re.search(r'<input[^>]*name="next"[^>]*value="([^"]*)"', page)
    assert next_field and next_field.group(1) == "/espace"
    assert destination(actions.login(next=next_field.group(1)).location) == "/espace"


def test_rehash_on_login_when_parameters_changed(app, actions):
    actions.create_active_account()
    old = PasswordHasher(memory_cost=8 * 1024, time_cost=1, parallelism=1).hash(normalize(PASSWORD))
    set_user(app, password_hash=old)
    assert actions.login().status_code == 302
    stored = user_row(app).password_hash
    assert stored != old
    params = extract_parameters(stored)
    settings = settings_of(app)
    assert (params.memory_cost, params.time_cost, params.parallelism) == (
        settings.argon2_memory_kib,
        settings.argon2_time_cost,
        settings.argon2_parallelism,
    )
    logout(actions)
    assert actions.login().status_code == 302  # the new hash works
    # A hash at the current parameters is left alone.
    assert user_row(app).password_hash == stored


def test_locked_account(app, client, actions):
    actions.create_active_account()
    assert actions.login().status_code == 302
    set_user(app, locked_at=utcnow())
    # The open session dies with the lock...
    assert not logged_in(client)
    # ...and the password no longer opens one.
    response = actions.login()
    assert response.status_code == 403
    assert "bloqué" in text(response)
    assert not logged_in(client)


def test_reset_required_account_is_sent_to_reset(app, actions):
    actions.create_active_account()
    set_user(app, password_reset_required=True)
    response = actions.login()
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "nouveau mot de passe" in html.unescape(page)
    assert 'href="/password/forgot"' in page
    # Issue 12: the link was e-mailed; a new one is sent without typing the address.
    assert "Réinitialisation de votre mot de passe France Travail" in html.unescape(page)
    assert 'action="/password/forgot/again"' in page
    with get_database(app).session_scope() as session:
        assert session.scalars(select(AuthSession)).all() == []


def test_logout_without_session_is_harmless(client):
    csrf = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 302
    assert response.location == "/login"


def test_logout_ends_the_session(client, actions):
    actions.create_active_account()
    assert actions.login().status_code == 302
    response = logout(actions)
    assert response.status_code == 302
    assert response.location == "/login"
    assert "déconnecté" in text(client.get("/login"))
    assert not logged_in(client)


@pytest.mark.parametrize("next_url", ["/espace\r\nX-Injecte: 1", "/espace\n", "/espace\x00"])
def test_a_next_with_control_characters_is_ignored(app, actions, next_url):
    actions.create_active_account()
    set_user(app, passkey_offer_refused=True)  # straight to the target, no offer page
    response = actions.login(next=next_url)
    assert response.status_code == 302
    assert "X-Injecte" not in response.headers
    assert "\n" not in response.location and "\x00" not in response.location
