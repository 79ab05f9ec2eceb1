"""Pytest fixtures around tests/services.py.

Import them from tests/conftest.py with ``from tests.fixtures_services import *  # noqa: F403``
(or load the module as a plugin: ``pytest -p tests.fixtures_services``).

Session fixtures run once per pytest-xdist worker: every worker gets its own PostgreSQL,
Redis and Chromium on its own ports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.services import PostgresServer, RedisServer, SMTPServer

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "add_virtual_authenticator",
    "browser",
    "page",
    "postgres",
    "redis_server",
    "smtp",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 10_000


def _missing(what: str) -> None:
    """Fail under CI (the service must be there), skip on a developer machine."""
    message = f"{what} is not installed (run `make system-deps`)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this worker; ``postgres.url(dbname)``, ``create_database()``."""
    if not PostgresServer.available():
        _missing("PostgreSQL (initdb, pg_ctl)")
    server = PostgresServer(in_memory=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for this worker; ``redis_server.url`` is ``redis://127.0.0.1:P/0``."""
    if not RedisServer.available():
        _missing("redis-server")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """A fresh SMTP server per test; ``smtp.wait_for(n)``, ``smtp.stop()``/``start()``."""
    server = SMTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (never ``playwright install``)."""
    if not os.access(CHROMIUM, os.X_OK):
        _missing(CHROMIUM)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser):
    """A new browser context and page per test (10 s default timeout)."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


def add_virtual_authenticator(
    page, transport: str = "internal", resident: bool = True, uv: bool = True
):
    """Attach a DevTools virtual authenticator to ``page``; returns ``(cdp, authenticator_id)``.

    Authenticators belong to the page (tab): use one page per authenticator. Use
    ``cdp.send("WebAuthn.getCredentials", {"authenticatorId": aid})`` to inspect it.
    """
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    result = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": transport,
                "hasResidentKey": resident,
                "hasUserVerification": True,
                "isUserVerified": uv,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, result["authenticatorId"]
