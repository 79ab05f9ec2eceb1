"""Fixtures: an app per test on a fresh database, a real SMTP server, helpers to act as a user."""

from __future__ import annotations

import dataclasses
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authserver import create_app
from authserver.config import is_loopback_host, load_settings
from authserver.db import get_database
from authserver.mail import worker_of
from authserver.migrate import upgrade
from authserver.sessions.oidc import backchannel_worker_of
from tests.fixtures_services import *  # noqa: F403
from tests.services import PostgresServer, SMTPServer, text_of

PASSWORD = "correct horse battery staple 42"

CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once; each test copies the file (much faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template(postgres: PostgresServer) -> str:
    name = "authserver_template"
    url = postgres.create_database(name)
    upgrade(url)
    return name


def fresh_pg_url(postgres: PostgresServer, template: str) -> str:
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}", template=template)


AppFactory = Callable[..., Flask]


def is_local_base_url(base_url: str | None) -> bool:
    """The default base URL, or an http:// one on this machine (development settings allowed)."""
    if base_url is None:
        return True
    parts = urlsplit(base_url)
    return parts.scheme == "http" and is_loopback_host(parts.hostname or "")


# The apps of make_app hash passwords with Argon2id at a small cost (1 MiB, one pass: about
# 0.5 ms instead of 20): the sign-ups and logins of the unit tests test what a login does, and
# at the production cost they were 11 % of their time. The production cost is tested where it
# matters: tests/accounts/test_passwords_policy.py (the parameters), the servers of tests/multi
# and tests/e2e (the defaults), the timing tests (marked ``argon2_production_cost``), bench/.
TEST_ARGON2_MEMORY_KIB = 1024
TEST_ARGON2_TIME_COST = 1


@pytest.fixture
def make_app(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, smtp: SMTPServer
) -> Iterator[AppFactory]:
    """Build an app on a fresh copy of the migrated database, mail to the test SMTP server."""
    apps: list[Flask] = []
    production_cost = request.node.get_closest_marker("argon2_production_cost") is not None

    def factory(database_url: str | None = None, **env: str) -> Flask:
        if database_url is None:
            db_path = tmp_path / f"app{len(apps)}.db"
            shutil.copy(sqlite_template, db_path)
            database_url = f"sqlite:///{db_path}"
        values = {
            "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_MAIL_URL": smtp.url,
            "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
            "AUTHSERVER_MAIL_RETRY_BASE": "0.2",
            # Tests wait for each e-mail: none is held back for a burst (tests/mail does).
            "AUTHSERVER_MAIL_GATHER_SECONDS": "0",
            "AUTHSERVER_MAIL_RETRY_MAX": "1",
            "AUTHSERVER_SECURITY_LOG": "stdout",
            **env,
        }
        if not is_local_base_url(values.get("AUTHSERVER_BASE_URL")):
            # The embedded identity provider is refused for a server others reach (issue 11).
            values.setdefault("AUTHSERVER_IDENTITY_PROVIDER", "hosted")
            values.setdefault("AUTHSERVER_IDENTITY_URL", "https://identite.example.fr")
            values.setdefault("AUTHSERVER_IDENTITY_SECRET", "hosted-secret-0123456789")
        settings = load_settings(values)
        if not production_cost:
            settings = dataclasses.replace(
                settings,
                argon2_memory_kib=TEST_ARGON2_MEMORY_KIB,
                argon2_time_cost=TEST_ARGON2_TIME_COST,
            )
        app = create_app(settings=settings, test_config={"TESTING": True})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        worker_of(app).stop()
        # Its database may be dropped next (PostgreSQL): a thread left running logged its
        # failed rounds into whichever test ran next in this process.
        backchannel_worker_of(app).stop()
        get_database(app).dispose()
        store = app.extensions.get("authserver.webauthn.challenges")
        if hasattr(store, "dispose"):
            store.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def backend_app(request: pytest.FixtureRequest, make_app: AppFactory) -> Flask:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return make_app()
    postgres = request.getfixturevalue("postgres")
    template = request.getfixturevalue("pg_template")
    return make_app(fresh_pg_url(postgres, template))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page without csrf-token meta"
    return match.group(1)


def link_in(message: EmailMessage, path: str) -> str:
    """The one URL of the mail's text part whose path starts with ``path``."""
    urls = re.findall(r"https?://\S+", text_of(message))
    matching = [url for url in urls if path in url]
    assert len(matching) == 1, f"expected one {path} link, got {urls}"
    return matching[0]


def _is_activation(message: EmailMessage) -> bool:
    try:
        return "/activate/" in text_of(message)
    except AssertionError:  # no text part
        return False


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


class Actions:
    """What a user does, over HTTP (the test client), with the real SMTP server."""

    def __init__(self, client: FlaskClient, smtp: SMTPServer) -> None:
        self.client = client
        self.smtp = smtp

    def csrf(self, path: str = "/login") -> str:
        return csrf_of(self.client.get(path, follow_redirects=True).get_data(as_text=True))

    def signup(self, username: str = "martin.dupont", **overrides: Any) -> Any:
        data = {
            "csrf_token": self.csrf("/signup"),
            "username": username,
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "civility": "monsieur",
            "last_name": "Dupont",
            "first_name": "Martin",
            "email": f"{username.split('@')[0]}@entreprise.fr",
            "phone": "07 12 34 56 78",
            "cgu": "y",
        }
        data.update(overrides)
        return self.client.post("/signup", data=data)

    def activation_link(self, count: int = 1) -> str:
        messages = self.smtp.wait_for(count)
        return link_in(messages[count - 1], "/activate/")

    def activate(self, count: int = 1) -> Any:
        return self.client.get(path_of(self.activation_link(count)))

    def login(self, username: str = "martin.dupont", password: str = PASSWORD, **extra: str) -> Any:
        data = {"csrf_token": self.csrf("/login"), "username": username, "password": password}
        data.update(extra)
        return self.client.post("/login", data=data)

    def logout(self) -> Any:
        page = self.client.get("/espace", follow_redirects=True).get_data(as_text=True)
        return self.client.post("/logout", data={"csrf_token": csrf_of(page)})

    def create_active_account(self, username: str = "martin.dupont", **overrides: Any) -> None:
        before = len(self.smtp.messages)
        response = self.signup(username, **overrides)
        assert response.status_code == 302, response.get_data(as_text=True)
        # An alert of an earlier login may still be on its way: not "the next e-mail".
        message = self.smtp.wait_for_match(_is_activation, start=before)
        assert self.client.get(path_of(link_in(message, "/activate/"))).status_code == 200


@pytest.fixture
def actions(client: FlaskClient, smtp: SMTPServer) -> Actions:
    return Actions(client, smtp)
