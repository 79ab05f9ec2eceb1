"""The passkey JSON API of the contract, over HTTP: the four calls, their options, their errors.

A software authenticator (tests/softauthn.py) plays the browser and the passkey provider, so
every ceremony here is a real one: real challenges from the server, real signatures.
``Browser`` and ``enroll`` are shared with test_ceremonies.py.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from webauthn.helpers import base64url_to_bytes

from authserver import settings_of
from authserver.accounts.service import hashing
from authserver.accounts.validation import email_key, username_key
from authserver.db import get_database
from authserver.models import User, WebAuthnCredential, utcnow
from authserver.webauthn.client_data import MAX_FIELD
from tests.conftest import PASSWORD, Actions, csrf_of
from tests.services import SMTPServer
from tests.softauthn import SoftAuthenticator, b64url

ORIGIN = "http://localhost:5000"  # AUTHSERVER_BASE_URL's default origin in tests
RP_ID = "localhost"
USER = "martin.dupont"
OTHER = "claire.martin"
GOOGLE_PASSWORD_MANAGER = "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"


def authenticator(**options: Any) -> SoftAuthenticator:
    return SoftAuthenticator(rp_id=RP_ID, origin=ORIGIN, **options)


class Browser:
    """One browser (a Flask test client) making the contract's JSON calls."""

    def __init__(self, actions: Actions) -> None:
        self.actions = actions
        self.client = actions.client
        self._csrf: str | None = None

    def csrf(self) -> str:
        """The page's csrf-token meta (valid until the session changes)."""
        if self._csrf is None:
            self._csrf = csrf_of(self.client.get("/account/passkeys").get_data(as_text=True))
        return self._csrf

    # -- registration (logged in)

    def register_options_response(self, body: Any = None) -> Any:
        return self.client.post(
            "/webauthn/register/options",
            json={} if body is None else body,
            headers={"X-CSRFToken": self.csrf()},
        )

    def register_options(self, body: Any = None) -> dict[str, Any]:
        response = self.register_options_response(body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def register_verify(self, credential: Any, name: Any = None, **extra: Any) -> Any:
        body: dict[str, Any] = {"credential": credential, **extra}
        if name is not None:
            body["name"] = name
        return self.client.post(
            "/webauthn/register/verify", json=body, headers={"X-CSRFToken": self.csrf()}
        )

    def register(self, auth: SoftAuthenticator, name: str | None = None, **kw: Any) -> dict:
        """Enroll a passkey made by ``auth``; returns the answer ``{"id", "name"}``."""
        response = self.register_verify(auth.register(self.register_options(), **kw), name)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    # -- login (anonymous)

    def login_options(self, username: str | None = None) -> dict[str, Any]:
        body = {} if username is None else {"username": username}
        response = self.client.post("/webauthn/login/options", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def login_verify(self, credential: Any, **extra: Any) -> Any:
        response = self.client.post(
            "/webauthn/login/verify", json={"credential": credential, **extra}
        )
        if response.status_code == 200:
            self._csrf = None
        return response

    def login(self, auth: SoftAuthenticator, username: str | None = None, **kw: Any) -> Any:
        """A whole passkey login: options, the authenticator's assertion, verify."""
        return self.login_verify(auth.assert_(self.login_options(username), **kw))

    def password_login(self, username: str = USER) -> None:
        assert self.actions.login(username).status_code == 302
        self._csrf = None

    def logout(self) -> None:
        self.client.post("/logout", data={"csrf_token": self.csrf()})
        self._csrf = None
        assert not self.logged_in()

    @property
    def ceremony_cookie(self) -> str | None:
        cookie = self.client.get_cookie("authserver_ceremony", path="/webauthn/")
        return cookie.value if cookie else None

    def logged_in(self) -> bool:
        return self.client.get("/account/passkeys").status_code == 200


def new_browser(app: Flask, smtp: SMTPServer) -> Browser:
    return Browser(Actions(app.test_client(), smtp))


def create_accounts(app: Flask, smtp: SMTPServer, *usernames: str) -> None:
    """Active accounts, all created before any passkey exists.

    (Passkey and new-device e-mails are delivered in the background: created later, an
    account's activation mail could be mistaken for one of them.)
    """
    actions = Actions(app.test_client(), smtp)
    for username in usernames:
        actions.create_active_account(username)


_PASSWORD_HASH: list[str] = []


def seed_accounts(app: Flask, *usernames: str) -> None:
    """Active accounts written straight to the database: no sign-up form, no e-mail.

    Much faster than ``create_accounts``; for the long tables of malformed bodies.
    """
    with app.app_context():
        if not _PASSWORD_HASH:
            _PASSWORD_HASH.append(hashing().hash(PASSWORD))
    now = utcnow()
    with get_database(app).session_scope() as session:
        for username in usernames:
            email = f"{username}@entreprise.fr"
            session.add(
                User(
                    username=username,
                    username_key=username_key(username),
                    password_hash=_PASSWORD_HASH[0],
                    password_changed_at=now,
                    civility="monsieur",
                    last_name="Dupont",
                    first_name="Martin",
                    email=email,
                    email_key=email_key(email),
                    phone="0712345678",
                    cgu_version=settings_of(app).cgu_version,
                    cgu_accepted_at=now,
                    created_at=now,
                    activated_at=now,
                )
            )


def seed_passkey(app: Flask, auth: SoftAuthenticator, username: str = USER) -> None:
    """A passkey of ``auth`` written straight to the database, as a registration would."""
    user = user_row(app, username)
    auth.register({"challenge": "AAAA", "user": {"id": b64url(user.user_handle)}})
    cred = auth.credential()
    with get_database(app).session_scope() as session:
        session.add(
            WebAuthnCredential(
                credential_id=cred.credential_id,
                user_id=user.id,
                public_key=cred.cose_key,
                sign_count=cred.sign_count,
                transports=",".join(auth.transports),
                aaguid=str(uuid.UUID(bytes=auth.aaguid)),
                backup_eligible=cred.backup_eligible,
                backup_state=cred.backup_state,
                name="Clé d'accès",
                created_at=utcnow(),
            )
        )


def enroll(
    app: Flask,
    smtp: SMTPServer,
    auth: SoftAuthenticator,
    username: str = USER,
    *,
    create: bool = True,
    seed: bool = False,
    log_out: bool = True,
    **register: Any,
) -> Browser:
    """An account (new unless ``create`` is false) with one passkey on ``auth``, logged out."""
    if seed:
        seed_accounts(app, username)
    elif create:
        create_accounts(app, smtp, username)
    browser = new_browser(app, smtp)
    browser.password_login(username)
    browser.register(auth, **register)
    if log_out:
        browser.logout()
    return browser


def user_row(app: Flask, username: str = USER) -> User:
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username_key == username))
        assert user is not None
        return user


def passkeys(app: Flask) -> list[WebAuthnCredential]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(WebAuthnCredential).order_by(WebAuthnCredential.id)))


def assert_json_error(response: Any, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["message"], str) and body["message"]
    if error is not None:
        assert body["error"] == error, body
    return body


@pytest.fixture
def auth() -> SoftAuthenticator:
    return authenticator()


@pytest.fixture
def browser(actions: Actions) -> Browser:
    """martin.dupont, logged in with his password, no passkey yet."""
    actions.create_active_account(USER)
    assert actions.login(USER).status_code == 302
    return Browser(actions)


@pytest.fixture
def enrolled(app: Flask, smtp: SMTPServer, auth: SoftAuthenticator) -> Browser:
    """martin.dupont with one passkey on ``auth``, logged out."""
    return enroll(app, smtp, auth)


@pytest.fixture
def quick_browser(app: Flask, smtp: SMTPServer) -> Browser:
    """A seeded martin.dupont logged in with his password, no passkey (for long tables)."""
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    return browser


@pytest.fixture
def quick_enrolled(app: Flask, smtp: SMTPServer, auth: SoftAuthenticator) -> Browser:
    """A seeded martin.dupont with a seeded passkey on ``auth``, anonymous (for long tables)."""
    seed_accounts(app, USER)
    seed_passkey(app, auth)
    return new_browser(app, smtp)


# --------------------------------------------------------------------------- creation options


def test_creation_options_follow_the_issue(app, browser):
    options = browser.register_options()
    user = user_row(app)

    assert options["rp"] == {"id": RP_ID, "name": "France Travail Pro"}
    assert base64url_to_bytes(options["user"]["id"]) == user.user_handle
    assert options["user"]["name"] == USER
    assert options["user"]["displayName"] == "Martin Dupont"
    assert len(base64url_to_bytes(options["challenge"])) >= 16
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-8, -7, -257]
    assert {p["type"] for p in options["pubKeyCredParams"]} == {"public-key"}
    selection = options["authenticatorSelection"]
    assert selection["residentKey"] == "required"
    assert selection["requireResidentKey"] is True
    assert selection["userVerification"] == "required"
    assert "authenticatorAttachment" not in selection
    assert options["attestation"] == "none"
    assert options["hints"] == ["client-device", "hybrid"]
    assert options["excludeCredentials"] == []
    assert options["timeout"] > 0


def test_every_ceremony_gets_a_fresh_challenge(browser):
    challenges = {browser.register_options()["challenge"] for _ in range(3)}
    challenges |= {browser.login_options()["challenge"] for _ in range(3)}
    assert len(challenges) == 6


def test_exclude_credentials_lists_the_users_passkeys(app, smtp, browser):
    create_accounts(app, smtp, OTHER)
    phone, laptop = authenticator(transports=("hybrid",)), authenticator(transports=("internal",))
    first = browser.register(phone)["id"]
    second = browser.register(laptop)["id"]

    options = browser.register_options()
    assert {d["id"]: d["transports"] for d in options["excludeCredentials"]} == {
        first: ["hybrid"],
        second: ["internal"],
    }
    assert {d["type"] for d in options["excludeCredentials"]} == {"public-key"}
    # So the authenticator that already holds one refuses (the browser's InvalidStateError).
    with pytest.raises(ValueError, match="InvalidStateError"):
        laptop.register(options)

    # Another account's options do not list them.
    other = enroll(app, smtp, authenticator(), OTHER, create=False, log_out=False)
    other_ids = {d["id"] for d in other.register_options()["excludeCredentials"]}
    assert len(other_ids) == 1 and not other_ids & {first, second}


# --------------------------------------------------------------------------- registration


def test_register_stores_the_passkey(app, browser, auth):
    answer = browser.register(auth, name="  Mon ordinateur  ")
    (row,) = passkeys(app)
    cred = auth.credential()

    assert answer == {"id": cred.id_b64, "name": "Mon ordinateur"}
    assert row.credential_id == cred.credential_id
    assert row.user_id == user_row(app).id
    assert row.public_key == cred.cose_key
    assert row.sign_count == 0
    assert row.transports == "internal,hybrid"
    assert row.aaguid == "00000000-0000-0000-0000-000000000000"
    assert row.attestation_format == "none"
    assert (row.backup_eligible, row.backup_state) == (False, False)
    assert row.cloned_at is None and row.last_used_at is None
    assert abs((utcnow() - row.created_at).total_seconds()) < 60


def test_register_names_the_passkey_after_its_provider(app, browser):
    synced = authenticator(
        aaguid=bytes.fromhex(GOOGLE_PASSWORD_MANAGER.replace("-", "")),
        backup_eligible=True,
        backup_state=True,
    )
    answer = browser.register(synced)
    assert answer["name"].startswith("Google Password Manager (")
    unnamed = browser.register(authenticator())
    assert unnamed["name"].startswith("Clé d'accès (")
    rows = passkeys(app)
    assert rows[0].aaguid == GOOGLE_PASSWORD_MANAGER
    assert (rows[0].backup_eligible, rows[0].backup_state) == (True, True)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_each_offered_algorithm_registers_and_logs_in(app, smtp, alg):
    auth = authenticator(alg=alg)
    browser = enroll(app, smtp, auth)
    response = browser.login(auth)
    assert response.status_code == 200, response.get_json()
    assert browser.logged_in()


def test_same_credential_id_for_a_second_user_is_refused(app, smtp, auth):
    create_accounts(app, smtp, USER, OTHER)
    enroll(app, smtp, auth, USER, create=False)
    taken = auth.credential().credential_id
    other = enroll(app, smtp, authenticator(), OTHER, create=False, log_out=False)

    thief = authenticator()
    response = other.register_verify(thief.register(other.register_options(), credential_id=taken))
    assert_json_error(response, 409, "already_registered")
    owners = {row.credential_id: row.user_id for row in passkeys(app)}
    assert owners[taken] == user_row(app, USER).id
    assert len(owners) == 2


def test_credential_id_is_unique_in_the_database(app, smtp, auth):
    create_accounts(app, smtp, USER, OTHER)
    enroll(app, smtp, auth, USER, create=False)
    enroll(app, smtp, authenticator(), OTHER, create=False)
    with pytest.raises(IntegrityError), get_database(app).session_scope() as session:
        session.execute(
            insert(WebAuthnCredential).values(
                credential_id=auth.credential().credential_id,
                user_id=user_row(app, OTHER).id,
                public_key=b"\xa0",
                name="copie",
                created_at=utcnow(),
            )
        )
    assert len(passkeys(app)) == 2


# Names the JSON API refuses: (id, name). Run on SQLite and PostgreSQL, where a lone surrogate
# (not encodable as UTF-8) or a NUL (refused in PostgreSQL text) would otherwise be a 500.
BAD_NAMES = [
    ("too-long", "x" * 65),
    ("number", 42),
    ("list", ["Mon ordinateur"]),
    ("lone-surrogate", "PC \ud800"),
    ("low-surrogate", "\udfff"),
    ("nul", "PC\x00bureau"),
    ("escape", "\x1b[31mrouge"),
    ("newline", "PC\ndu bureau"),
    ("c1-control", "PC\x85"),
]


@pytest.mark.parametrize("name", [pytest.param(n, id=i) for i, n in BAD_NAMES])
def test_register_names_are_checked(backend_app, smtp, name):
    seed_accounts(backend_app, USER)
    browser = new_browser(backend_app, smtp)
    browser.password_login(USER)
    response = browser.register_verify(authenticator().register(browser.register_options()), name)
    assert_json_error(response, 400, "invalid_field")
    assert passkeys(backend_app) == []


def test_register_accepts_any_printable_name(backend_app, smtp):
    seed_accounts(backend_app, USER)
    browser = new_browser(backend_app, smtp)
    browser.password_login(USER)
    name = "Téléphone 👍 d'Élodie — bureau"
    assert browser.register(authenticator(), name=name)["name"] == name


def _on(app: Flask, smtp: SMTPServer) -> Browser:
    """A seeded martin.dupont logged in with his password on ``app``."""
    seed_accounts(app, USER)
    browser = new_browser(app, smtp)
    browser.password_login(USER)
    return browser


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param(["internal"] * 40, "internal", id="same-40-times"),
        pytest.param(
            ["usb", "internal", "usb", "hybrid", "internal"], "usb,internal,hybrid", id="mixed"
        ),
        pytest.param(
            ["usb", "nfc", "ble", "smart-card", "internal", "cable", "hybrid"] * 10 + ["x"] * 30,
            "usb,nfc,ble,smart-card,internal,cable,hybrid",
            id="all-known-many-times",
        ),
    ],
)
def test_transports_are_stored_once_each(backend_app, smtp, sent, stored):
    browser = _on(backend_app, smtp)
    auth = authenticator(transports=tuple(sent))
    browser.register(auth)
    (row,) = passkeys(backend_app)
    assert row.transports == stored
    # And listed once each in excludeCredentials (sorted, as browsers report them).
    (descriptor,) = browser.register_options()["excludeCredentials"]
    assert descriptor["transports"] == sorted(stored.split(","))


def _longest_provider() -> tuple[str, str]:
    from authserver.webauthn.providers import _load_table

    return max(_load_table()["names"].items(), key=lambda item: len(item[1]))


def test_a_long_provider_name_still_makes_a_default_name(backend_app, smtp):
    aaguid, provider = _longest_provider()
    assert len(provider) > 64 - len(" (dd/mm/yyyy)"), "the shipped table has long names"
    browser = _on(backend_app, smtp)
    answer = browser.register(authenticator(aaguid=uuid.UUID(aaguid).bytes))
    (row,) = passkeys(backend_app)
    assert answer["name"] == row.name
    assert len(row.name) <= 64
    assert row.name.endswith(f" ({utcnow():%d/%m/%Y})") or row.name.endswith(")")
    assert row.name.startswith(provider[:40]) and "…" in row.name


def test_default_name_fits_its_column():
    from datetime import datetime

    from authserver.webauthn.service import default_name

    aaguid, _provider = _longest_provider()
    when = datetime(2026, 11, 26)
    assert len(default_name(aaguid, when)) <= 64
    assert default_name(aaguid, when).endswith("… (26/11/2026)")
    assert default_name(GOOGLE_PASSWORD_MANAGER, when) == "Google Password Manager (26/11/2026)"
    assert default_name("00000000-0000-0000-0000-000000000000", when) == "Clé d'accès (26/11/2026)"


@pytest.mark.parametrize("count", [2**31, 2**32 - 2])
def test_counters_above_a_signed_32_bit_integer_are_stored(backend_app, smtp, count):
    """WebAuthn counters are unsigned 32-bit: the column must hold them (BIGINT)."""
    auth = authenticator()
    browser = _on(backend_app, smtp)
    browser.register(auth, sign_count=count)
    assert passkeys(backend_app)[0].sign_count == count
    browser.logout()
    assert browser.login(auth).status_code == 200  # the counter goes to count + 1
    assert passkeys(backend_app)[0].sign_count == count + 1


# --------------------------------------------------------------------------- request options


def test_request_options_for_a_discoverable_login(client, actions):
    browser = Browser(actions)
    response = client.post("/webauthn/login/options", json={})
    assert response.status_code == 200
    options = response.get_json()
    assert not options.get("allowCredentials")
    assert options["rpId"] == RP_ID
    assert options["userVerification"] == "required"
    assert len(base64url_to_bytes(options["challenge"])) >= 16
    assert options["timeout"] > 0
    # The challenge is bound to this browser by a strict, http-only cookie on /webauthn/.
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("authserver_ceremony=")
    )
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/webauthn/" in header
    assert browser.ceremony_cookie


def test_request_options_for_a_username_first_login(app, smtp, enrolled, auth):
    second = authenticator(transports=("usb",))
    laptop = new_browser(app, smtp)
    laptop.password_login(USER)
    laptop.register(second)

    options = enrolled.login_options(USER.upper())
    assert {d["id"]: d["transports"] for d in options["allowCredentials"]} == {
        auth.credential().id_b64: ["hybrid", "internal"],  # sorted, as browsers report them
        second.credential().id_b64: ["usb"],
    }
    assert options["userVerification"] == "required"


# --------------------------------------------------------------------------- access rules


@pytest.mark.parametrize("path", ["/webauthn/register/options", "/webauthn/register/verify"])
def test_register_calls_need_a_login(client, path):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post(path, json={}, headers={"X-CSRFToken": token})
    assert_json_error(response, 401, "login_required")


@pytest.mark.parametrize("path", ["/webauthn/register/options", "/webauthn/register/verify"])
def test_register_calls_need_the_csrf_header(browser, auth, path):
    body = {"credential": auth.register(browser.register_options())} if "verify" in path else {}
    assert_json_error(browser.client.post(path, json=body), 400, "csrf_failed")
    response = browser.client.post(path, json=body, headers={"X-CSRFToken": "forged"})
    assert_json_error(response, 400, "csrf_failed")


def test_login_calls_need_no_csrf_token(client):
    """The anonymous ceremony is bound to the browser by its challenge, not by a token."""
    assert client.post("/webauthn/login/options", json={}).status_code == 200
    response = client.post("/webauthn/login/verify", json={"credential": None})
    assert_json_error(response, 400, "malformed_credential")


@pytest.mark.parametrize(
    "path",
    [
        "/webauthn/register/options",
        "/webauthn/register/verify",
        "/webauthn/login/options",
        "/webauthn/login/verify",
    ],
)
def test_json_calls_are_post_only(client, path):
    assert_json_error(client.get(path), 405)


# --------------------------------------------------------------------------- malformed bodies

# Raw bodies: (id, content type, data, status, error).
RAW_BODIES = [
    ("form-encoded", "application/x-www-form-urlencoded", "credential=x", 415, None),
    ("text", "text/plain", '{"credential": {}}', 415, None),
    ("no-content-type", None, '{"credential": {}}', 415, None),
    ("invalid-json", "application/json", '{"credential": ', 400, None),
    ("empty", "application/json", "", 400, None),
    ("not-utf8", "application/json", b'{"credential": "\xff\xfe"}', 400, None),
    ("json-array", "application/json", "[]", 400, None),
    ("json-string", "application/json", '"credential"', 400, None),
    ("json-number", "application/json", "42", 400, None),
    ("json-null", "application/json", "null", 400, None),
    ("deeply-nested", "application/json", "[" * 100_000 + "]" * 100_000, 400, None),
    ("too-large", "application/json", '{"x": "' + "a" * 300_000 + '"}', 413, None),
]

ENDPOINTS = [
    "/webauthn/register/options",
    "/webauthn/register/verify",
    "/webauthn/login/options",
    "/webauthn/login/verify",
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    ("content_type", "data", "status", "error"),
    [pytest.param(*case[1:], id=case[0]) for case in RAW_BODIES],
)
def test_malformed_raw_bodies(request, client, path, content_type, data, status, error):
    headers = {}
    if "register" in path:  # logged in, with the CSRF header: only the body is wrong
        browser = request.getfixturevalue("quick_browser")
        client = browser.client
        headers["X-CSRFToken"] = browser.csrf()
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(path, data=data, headers=headers)
    assert_json_error(response, status, error)


def _set(path: str, value: Any):
    """A mutation: set ``credential[...path...]`` (dotted) to ``value``; ``DELETE`` removes."""

    def mutate(credential: dict) -> None:
        *parents, last = path.split(".")
        node = credential
        for key in parents:
            node = node[key]
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value

    return mutate


def _client_data(**changes: Any):
    """A mutation of the decoded clientDataJSON (``DELETE`` removes a member)."""

    def mutate(credential: dict) -> None:
        data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
        for key, value in changes.items():
            if value is DELETE:
                data.pop(key, None)
            else:
                data[key] = value
        credential["response"]["clientDataJSON"] = b64url(json.dumps(data).encode())

    return mutate


def _client_data_raw(raw: bytes):
    return _set("response.clientDataJSON", b64url(raw))


DELETE = object()
HUGE = "A" * (MAX_FIELD + 4)

# Bad credentials, shared by both verify endpoints: (id, mutation). Each starts from a genuine
# response to the server's own options, so the checks past the challenge are reached too.
COMMON_BAD_CREDENTIALS = [
    ("credential-missing", None),
    ("credential-string", lambda c: "credential"),
    ("credential-list", lambda c: [c]),
    ("credential-number", lambda c: 7),
    ("credential-empty", lambda c: {}),
    ("response-missing", _set("response", DELETE)),
    ("response-string", _set("response", "abc")),
    ("response-list", _set("response", [])),
    ("id-missing", _set("id", DELETE)),
    ("id-number", _set("id", 12)),
    ("id-empty", _set("id", "")),
    ("id-other", _set("id", b64url(b"another id"))),
    ("rawId-missing", _set("rawId", DELETE)),
    ("rawId-garbage", _set("rawId", "**not base64**")),
    ("rawId-list", _set("rawId", ["a"])),
    ("rawId-huge", _set("rawId", HUGE)),
    ("type-missing", _set("type", DELETE)),
    ("type-wrong", _set("type", "password")),
    ("clientData-missing", _set("response.clientDataJSON", DELETE)),
    ("clientData-number", _set("response.clientDataJSON", 1)),
    ("clientData-null", _set("response.clientDataJSON", None)),
    ("clientData-garbage", _set("response.clientDataJSON", "!!!%%%")),
    ("clientData-padding-junk", _set("response.clientDataJSON", "e30===x")),
    ("clientData-huge", _set("response.clientDataJSON", HUGE)),
    ("clientData-not-json", _client_data_raw(b"\x00\x01 not json")),
    ("clientData-not-utf8", _client_data_raw(b'{"type": "\xff"}')),
    ("clientData-array", _client_data_raw(b"[1, 2]")),
    ("clientData-empty-object", _client_data_raw(b"{}")),
    ("clientData-type-missing", _client_data(type=DELETE)),
    ("clientData-type-swapped", _client_data(type="payment.get")),
    ("clientData-challenge-missing", _client_data(challenge=DELETE)),
    ("clientData-challenge-number", _client_data(challenge=12345)),
    ("clientData-challenge-garbage", _client_data(challenge="@@@")),
    ("clientData-challenge-other", _client_data(challenge=b64url(b"0123456789abcdef0123"))),
    ("clientData-origin-missing", _client_data(origin=DELETE)),
    ("clientData-origin-number", _client_data(origin=5000)),
    ("clientData-deep", _client_data_raw(b"[" * 5000 + b"]" * 5000)),
    ("attachment-unknown", _set("authenticatorAttachment", "teleporter")),
]

LOGIN_BAD_CREDENTIALS = [
    ("authData-missing", _set("response.authenticatorData", DELETE)),
    ("authData-number", _set("response.authenticatorData", 3)),
    ("authData-garbage", _set("response.authenticatorData", "$$$")),
    ("authData-short", _set("response.authenticatorData", b64url(b"\x00" * 36))),
    ("authData-empty", _set("response.authenticatorData", "")),
    ("authData-huge", _set("response.authenticatorData", HUGE)),
    ("authData-trailing-bytes", lambda c: _append_auth_data(c, b"\x00\x01")),
    ("authData-claims-attested-data", lambda c: _auth_data_flags(c, 0x40)),
    ("authData-claims-extensions", lambda c: _auth_data_flags(c, 0x80)),
    ("authData-BS-without-BE", lambda c: _auth_data_flags(c, 0x10)),
    ("signature-missing", _set("response.signature", DELETE)),
    ("signature-empty", _set("response.signature", "")),
    ("signature-garbage", _set("response.signature", "!!")),
    ("signature-not-der", _set("response.signature", b64url(b"\x30\x02\x01"))),
    ("signature-huge", _set("response.signature", HUGE)),
    ("userHandle-number", _set("response.userHandle", 42)),
    ("userHandle-garbage", _set("response.userHandle", "***")),
    ("userHandle-list", _set("response.userHandle", ["x"])),
    ("userHandle-huge", _set("response.userHandle", HUGE)),
]


def _append_auth_data(credential: dict, extra: bytes) -> None:
    raw = base64url_to_bytes(credential["response"]["authenticatorData"])
    credential["response"]["authenticatorData"] = b64url(raw + extra)


def _auth_data_flags(credential: dict, flag: int) -> None:
    raw = bytearray(base64url_to_bytes(credential["response"]["authenticatorData"]))
    raw[32] |= flag
    credential["response"]["authenticatorData"] = b64url(bytes(raw))


def _body_for(good: dict, mutation: Any) -> dict:
    if mutation is None:
        return {}
    credential = copy.deepcopy(good)
    result = mutation(credential)
    return {"credential": credential if result is None else result}


@pytest.mark.parametrize(
    "mutation",
    [pytest.param(m, id=i) for i, m in COMMON_BAD_CREDENTIALS + LOGIN_BAD_CREDENTIALS],
)
def test_login_verify_refuses_malformed_credentials(app, quick_enrolled, auth, mutation):
    enrolled = quick_enrolled
    body = _body_for(auth.assert_(enrolled.login_options()), mutation)
    response = enrolled.client.post("/webauthn/login/verify", json=body)
    assert_json_error(response, 400)
    assert not enrolled.logged_in()


REGISTER_BAD_CREDENTIALS = [
    ("attestation-missing", _set("response.attestationObject", DELETE)),
    ("attestation-number", _set("response.attestationObject", 1)),
    ("attestation-garbage", _set("response.attestationObject", "%%%")),
    ("attestation-not-cbor", _set("response.attestationObject", b64url(b"\xff\xff\xff"))),
    ("attestation-huge", _set("response.attestationObject", HUGE)),
    ("transports-string", _set("response.transports", "internal")),
    ("transports-numbers", _set("response.transports", [1, 2])),
    ("transports-long", _set("response.transports", ["x" * 1000])),
]


@pytest.mark.parametrize(
    "mutation",
    [pytest.param(m, id=i) for i, m in COMMON_BAD_CREDENTIALS + REGISTER_BAD_CREDENTIALS],
)
def test_register_verify_refuses_malformed_credentials(app, quick_browser, auth, mutation):
    browser = quick_browser
    body = _body_for(auth.register(browser.register_options()), mutation)
    response = browser.client.post(
        "/webauthn/register/verify", json=body, headers={"X-CSRFToken": browser.csrf()}
    )
    assert_json_error(response, 400)
    assert passkeys(app) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": 12}, id="number"),
        pytest.param({"username": ["martin.dupont"]}, id="list"),
        pytest.param({"username": "m" * 255}, id="too-long"),
        pytest.param({"username": "martin\ud800"}, id="lone-surrogate"),
        pytest.param({"username": "\udc00martin"}, id="low-surrogate"),
        pytest.param({"username": "martin\x00.dupont"}, id="nul"),
        pytest.param({"username": "martin.dupont\n"}, id="newline"),
        pytest.param({"username": "\x7fmartin"}, id="delete"),
    ],
)
def test_login_options_checks_the_username(backend_app, body):
    response = backend_app.test_client().post("/webauthn/login/options", json=body)
    assert_json_error(response, 400, "invalid_field")


@pytest.mark.parametrize("next_url", [["/espace"], "/espace\x00", "/espace\ud800"])
def test_login_verify_checks_next(enrolled, auth, next_url):
    response = enrolled.login_verify(auth.assert_(enrolled.login_options()), next=next_url)
    assert_json_error(response, 400, "invalid_field")
