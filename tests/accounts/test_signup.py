"""Sign-up over HTTP with the real SMTP server: the journey, every rule, duplicates."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from authserver import settings_of
from authserver.accounts.validation import USERNAME_RULE
from authserver.db import get_database
from authserver.models import OutboxMail, User, utcnow
from tests.conftest import PASSWORD, csrf_of, link_in, path_of
from tests.services import html_of, text_of

# --------------------------------------------------------------------------- helpers


def logout(actions):
    """Se déconnecter from the page the user is on (the espace, or where it leads)."""
    page = actions.client.get("/espace", follow_redirects=True).get_data(as_text=True)
    return actions.client.post("/logout", data={"csrf_token": csrf_of(page)})


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inputs: list[dict[str, str | None]] = []
        self.labels: dict[str, str] = {}  # for -> text
        self._label_for: str | None = None
        self._label_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "input":
            self.inputs.append(attributes)
        elif tag == "label":
            self._label_for = attributes.get("for")
            self._label_text = []

    def handle_data(self, data):
        if self._label_for is not None:
            self._label_text.append(data)

    def handle_endtag(self, tag):
        if tag == "label" and self._label_for is not None:
            self.labels[self._label_for] = " ".join("".join(self._label_text).split())
            self._label_for = None


def parse(page: str) -> _Inputs:
    parser = _Inputs()
    parser.feed(page)
    return parser


def input_named(page: str, name: str) -> dict[str, str | None]:
    found = [i for i in parse(page).inputs if i.get("name") == name and i.get("type") != "radio"]
    assert len(found) == 1, f"expected one input named {name}, got {found}"
    return found[0]


def error_of(page: str, field: str) -> str:
    """The French error shown next to ``field``, linked to it by aria-describedby."""
    match = re.search(rf'<(\w+)[^>]*\bid="{field}-error"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no error shown for {field}"
    control = re.search(rf'<(?:input|fieldset)\b[^>]*\bid="{field}"[^>]*>', page, re.S)
    assert control, f"no control with id {field}"
    described = re.search(r'aria-describedby="([^"]*)"', control.group(0))
    assert described and f"{field}-error" in described.group(1).split(), (
        f"{field} does not reference its error"
    )
    assert control.start() < match.start(), "the error comes before its field"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(2))).strip()


def errors_shown(page: str) -> set[str]:
    return set(re.findall(r'\bid="([\w-]+)-error"', page))


def count(app, model, *where) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def user_row(app, username_key: str) -> User | None:
    with get_database(app).session_scope() as session:
        return session.scalar(select(User).where(User.username_key == username_key))


def form_data(client, **overrides) -> dict[str, str]:
    data = {
        "csrf_token": csrf_of(client.get("/signup").get_data(as_text=True)),
        "username": "martin.dupont",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "civility": "monsieur",
        "last_name": "Dupont",
        "first_name": "Martin",
        "email": "martin.dupont@entreprise.fr",
        "phone": "07 12 34 56 78",
        "cgu": "y",
    }
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


# --------------------------------------------------------------------------- the journey


def test_signup_email_activation_login_logout(app, client, actions, smtp):
    page = client.get("/signup")
    assert page.status_code == 200
    response = actions.signup()
    assert response.status_code == 302
    done = client.get(response.location)
    assert done.status_code == 200
    assert "e-mail" in done.get_data(as_text=True)

    [mail] = smtp.wait_for(1)
    assert mail["To"] == "martin.dupont@entreprise.fr"
    assert "martin.dupont" in text_of(mail)
    link = link_in(mail, "/activate/")
    assert link.startswith(settings_of(app).base_url + "/activate/")
    assert link in html_of(mail)

    # Not yet activated: the password alone does not open a session.
    assert actions.login().status_code == 403

    activated = client.get(path_of(link))
    assert activated.status_code == 200
    body = activated.get_data(as_text=True)
    assert "Félicitations, votre adresse e-mail a été validée !" in body
    assert re.search(r'<a [^>]*href="/login"[^>]*>\s*Se connecter\s*</a>', body)

    login = actions.login()
    assert login.status_code == 302
    assert urlsplit(login.location).path in ("/espace", "/passkeys/offer")
    espace = client.get("/espace", follow_redirects=True)
    assert espace.status_code == 200
    assert espace.request.path != "/login"
    assert "martin.dupont" in espace.get_data(as_text=True)  # who is logged in

    assert logout(actions).status_code == 302
    after = client.get("/espace")
    assert after.status_code == 302
    assert urlsplit(after.location).path == "/login"


def test_an_accented_address_receives_its_activation_link(client, actions, smtp):
    """Sign-up accepts « élise@entreprise.fr » (an internationalised address): the activation
    e-mail reaches it (SMTPUTF8), instead of failing at every attempt for ever."""
    assert actions.signup("elise.martin", email="élise@entreprise.fr").status_code == 302
    [mail] = smtp.wait_for(1)
    assert mail["To"] == "élise@entreprise.fr"
    assert smtp.envelopes[0][1] == ["élise@entreprise.fr"]
    assert client.get(path_of(link_in(mail, "/activate/"))).status_code == 200
    assert actions.login("elise.martin").status_code == 302


def test_signup_page_has_the_contract_labels(client):
    page = client.get("/signup").get_data(as_text=True)
    parsed = parse(page)
    labels = parsed.labels
    by_text = {text: for_id for for_id, text in labels.items()}
    for label, name in [
        ("Identifiant", "username"),
        ("Mot de passe", "password"),
        ("Confirmation mot de passe", "password_confirm"),
        ("Nom", "last_name"),
        ("Prénom", "first_name"),
        ("Adresse e-mail", "email"),
        ("Téléphone", "phone"),
        ("J'accepte les conditions générales d'utilisation", "cgu"),
    ]:
        assert label in by_text, f"no label {label!r} in {sorted(by_text)}"
        control = [i for i in parsed.inputs if i.get("id") == by_text[label]]
        assert control and control[0].get("name") == name
    radios = {i["value"]: labels[i["id"]] for i in parsed.inputs if i.get("name") == "civility"}
    assert radios == {"madame": "Madame", "monsieur": "Monsieur"}
    assert "Civilité" in page
    assert re.search(r"<button[^>]*>\s*Créer un compte\s*</button>", page)
    assert "Création d'un compte entreprise" in html.unescape(page)
    # The page says which characters an identifiant may use.
    assert html.escape(USERNAME_RULE, quote=False) in page or USERNAME_RULE in html.unescape(page)


def test_account_is_stored_with_cgu_version_time_and_e164_phone(app, client):
    before = utcnow()
    response = client.post(
        "/signup",
        data=form_data(
            client,
            username="Jeanne.Durand",
            civility="madame",
            phone="06.12.34.56.78",
            last_name="  Durand ",
            first_name="Jeanne",
            email="Jeanne.Durand@Entreprise.FR",
        ),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    user = user_row(app, "jeanne.durand")
    assert user is not None
    assert user.username == "Jeanne.Durand"
    assert user.civility == "madame"
    assert (user.last_name, user.first_name) == ("Durand", "Jeanne")
    assert user.email == "Jeanne.Durand@entreprise.fr"
    assert user.phone == "+33612345678"
    assert user.cgu_version == settings_of(app).cgu_version
    assert user.cgu_version
    assert before - timedelta(seconds=1) <= user.cgu_accepted_at <= utcnow()
    assert user.activated_at is None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("07 12 34 56 78", "+33712345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("+32 470 12 34 56", "+32470123456"),
    ],
)
def test_phone_stored_e164(app, client, typed, stored):
    assert client.post("/signup", data=form_data(client, phone=typed)).status_code == 302
    assert user_row(app, "martin.dupont").phone == stored


# --------------------------------------------------------------------------- every rule

LONG = "Une phrase de passe assez longue pour tout le monde ! "
# (case id, overrides, field showing the error, fragment of the French message)
RULES = [
    ("username-empty", {"username": ""}, "username", "Veuillez saisir un identifiant"),
    ("username-short", {"username": "ab"}, "username", "Identifiant invalide"),
    ("username-long", {"username": "a" * 65}, "username", "Identifiant invalide"),
    ("username-space", {"username": "martin dupont"}, "username", "Identifiant invalide"),
    ("username-accent", {"username": "émile.dupont"}, "username", "Identifiant invalide"),
    ("username-symbol", {"username": "martin/dupont"}, "username", "Identifiant invalide"),
    ("username-edge", {"username": "-martin"}, "username", "Identifiant invalide"),
    ("password-empty", {"password": "", "password_confirm": ""}, "password", "mot de passe"),
    (
        "password-11",
        {"password": "onze car. 1", "password_confirm": "onze car. 1"},
        "password",
        "au moins 12 caractères",
    ),
    (
        "password-257",
        {"password": (LONG * 5)[:257], "password_confirm": (LONG * 5)[:257]},
        "password",
        "ne doit pas dépasser 256 caractères",
    ),
    (
        "password-common",
        {"password": "password1234", "password_confirm": "password1234"},
        "password",
        "trop courant",
    ),
    (
        "password-common-2",
        {"password": "qwerty123456", "password_confirm": "qwerty123456"},
        "password",
        "trop courant",
    ),
    (
        "password-identifiant",
        {"password": "Martin.Dupont 2026 !", "password_confirm": "Martin.Dupont 2026 !"},
        "password",
        "ne doit pas contenir votre identifiant",
    ),
    (
        "password-email",
        {
            "email": "jeanne.durand@entreprise.fr",
            "password": "JEANNE.DURAND au bureau",
            "password_confirm": "JEANNE.DURAND au bureau",
        },
        "password",
        "ne doit pas contenir votre adresse e-mail",
    ),
    (
        "confirmation-mismatch",
        {"password_confirm": PASSWORD + "!"},
        "password_confirm",
        "ne sont pas identiques",
    ),
    ("civility-missing", {"civility": None}, "civility", "civilité"),
    ("civility-unknown", {"civility": "autre"}, "civility", "civilité"),
    ("last-name-missing", {"last_name": ""}, "last_name", "Veuillez saisir votre nom"),
    ("last-name-blank", {"last_name": "   "}, "last_name", "Veuillez saisir votre nom"),
    ("first-name-missing", {"first_name": ""}, "first_name", "Veuillez saisir votre prénom"),
    ("email-missing", {"email": ""}, "email", "Veuillez saisir une adresse e-mail"),
    ("email-invalid", {"email": "martin.dupont@"}, "email", "Adresse e-mail invalide"),
    ("email-no-domain", {"email": "martin@entreprise"}, "email", "Adresse e-mail invalide"),
    ("email-no-at", {"email": "pas-une-adresse"}, "email", "Adresse e-mail invalide"),
    ("phone-missing", {"phone": ""}, "phone", "Veuillez saisir un numéro de téléphone"),
    ("phone-short", {"phone": "06 12"}, "phone", "Numéro de téléphone invalide"),
    ("phone-letters", {"phone": "06 12 34 56 7a"}, "phone", "Numéro de téléphone invalide"),
    ("phone-too-long", {"phone": "+33 6 12 34 56 78 9"}, "phone", "Numéro de téléphone invalide"),
    ("cgu-unchecked", {"cgu": None}, "cgu", "conditions générales d'utilisation"),
]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [pytest.param(o, f, m, id=i) for i, o, f, m in RULES],
)
def test_every_rule_is_shown_next_to_its_field_in_french(app, client, overrides, field, message):
    data = form_data(client, **overrides)
    response = client.post("/signup", data=data)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in error_of(page, field)
    assert errors_shown(page) == {field}, "only the faulty field shows an error"

    # Nothing was created, nothing was queued.
    assert count(app, User) == 0
    assert count(app, OutboxMail) == 0

    # What was typed is kept, except the passwords.
    for name in ("username", "last_name", "first_name", "email"):
        if name in data:
            kept = input_named(page, name).get("value")
            assert kept is not None
            assert kept.strip() == " ".join(data[name].split()) or kept == data[name]
    phone = input_named(page, "phone").get("value")
    assert phone in (data["phone"], "+33712345678")
    for name in ("password", "password_confirm"):
        assert not input_named(page, name).get("value")
    if data["password"]:
        assert html.escape(data["password"]) not in page
        assert data["password"] not in page
    checked = [i.get("value") for i in parse(page).inputs if "checked" in i]
    if data.get("civility") in ("madame", "monsieur"):
        assert data["civility"] in checked
    assert ("y" in checked) is ("cgu" in data)


def test_password_of_256_characters_is_accepted(app, client):
    password = (LONG * 5)[:256]
    response = client.post(
        "/signup", data=form_data(client, password=password, password_confirm=password)
    )
    assert response.status_code == 302
    assert user_row(app, "martin.dupont") is not None


def test_empty_form_shows_every_error_at_once(app, client):
    csrf = csrf_of(client.get("/signup").get_data(as_text=True))
    response = client.post("/signup", data={"csrf_token": csrf})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert errors_shown(page) >= {
        "username",
        "password",
        "civility",
        "last_name",
        "first_name",
        "email",
        "phone",
        "cgu",
    }
    assert count(app, User) == 0


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize("second", ["martin.dupont", "MARTIN.DUPONT", "Martin.Dupont"])
def test_duplicate_identifiant_ignoring_case(app, client, actions, second):
    assert actions.signup("martin.dupont").status_code == 302
    response = client.post(
        "/signup",
        data=form_data(client, username=second, email="autre.personne@entreprise.fr"),
    )
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "n'est pas disponible" in html.unescape(error_of(page, "username"))
    assert input_named(page, "username").get("value") == second
    assert not input_named(page, "password").get("value")
    assert count(app, User) == 1
    assert count(app, OutboxMail) == 1  # only the first account's activation mail
    assert user_row(app, "martin.dupont").email == "martin.dupont@entreprise.fr"


def test_each_account_gets_its_own_activation_mail(app, actions, smtp):
    assert actions.signup("martin.dupont").status_code == 302
    assert actions.signup("jeanne.durand").status_code == 302
    messages = smtp.wait_for(2)
    assert sorted(m["To"] for m in messages) == [
        "jeanne.durand@entreprise.fr",
        "martin.dupont@entreprise.fr",
    ]
    assert text_of(messages[0]) != text_of(messages[1])
