"""OpenID Connect between two real processes in headless Chromium: authserver (live server)
and the CSP kit (``python -m examples.csp_kit``, its own process and port).

The code flow with PKCE end to end, then the id_token checked against the JWKS with PyJWT
(the provider signs with joserfc); the certified and uncertified pages of the seed; logout
from the service (RP-initiated) and from authserver (back-channel); step-up to a passkey.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from authserver.db import get_database
from tests.conftest import Actions
from tests.e2e.helpers import USERNAME, Watch, at, password_login, path_of
from tests.fixtures_services import add_virtual_authenticator
from tests.services import LiveServer, free_port, wait_for_port
from tests.sessions.oidc_support import certify, verify_jwt

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AUTHSERVER_CLI = ROOT / ".venv" / "bin" / "authserver"
SECRET = "test-secret-key-0123456789abcdef"  # the make_app fixture's


@dataclass
class Services:
    app: Flask
    auth_url: str
    kit_url: str
    client: dict


def _cli_env(app: Flask, auth_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "CSPKIT_"))}
    env.update(
        AUTHSERVER_DATABASE_URL=get_database(app).url,
        AUTHSERVER_SECRET_KEY=SECRET,
        AUTHSERVER_BASE_URL=auth_url,
        AUTHSERVER_INSTANCE_PATH=str(app.instance_path),
        AUTHSERVER_MAIL_URL="console",
    )
    return env


@pytest.fixture
def services(make_app, tmp_path):
    port, kit_port = free_port(), free_port()
    auth_url, kit_url = f"http://localhost:{port}", f"http://localhost:{kit_port}"
    app = make_app(AUTHSERVER_BASE_URL=auth_url)
    live = LiveServer(app, port=port).start()
    # Registered exactly as the contract says: `authserver client create`, JSON on stdout.
    created = subprocess.run(
        [
            str(AUTHSERVER_CLI),
            "client",
            "create",
            "--name",
            "Kit CSP",
            "--first-party",
            "--redirect-uri",
            f"{kit_url}/callback",
            "--post-logout-redirect-uri",
            f"{kit_url}/",
            "--backchannel-logout-uri",
            f"{kit_url}/backchannel-logout",
        ],
        env=_cli_env(app, auth_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    client = json.loads(created.stdout)
    assert client["client_id"] and client["client_secret"]
    log = open(tmp_path / "csp_kit.log", "wb")  # noqa: SIM115
    kit = subprocess.Popen(
        [sys.executable, "-m", "examples.csp_kit"],
        cwd=ROOT,
        env={
            **_cli_env(app, auth_url),
            "CSPKIT_ISSUER": auth_url,
            "CSPKIT_CLIENT_ID": client["client_id"],
            "CSPKIT_CLIENT_SECRET": client["client_secret"],
            "CSPKIT_BASE_URL": kit_url,
            "CSPKIT_SHOW_ID_TOKEN": "1",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(kit_port, timeout=20)
        yield Services(app, auth_url, kit_url, client)
    finally:
        kit.terminate()
        kit.wait(timeout=10)
        log.close()
        live.stop()
        if kit.returncode not in (0, -15):
            print((tmp_path / "csp_kit.log").read_text(errors="replace"))


@pytest.fixture
def account(services, smtp):
    Actions(services.app.test_client(), smtp).create_active_account(USERNAME)
    return services


@pytest.fixture
def watch(page):
    watcher = Watch(page)
    yield watcher
    assert watcher.unexpected() == []


def _login_at_authserver(page, services: Services) -> None:
    """On the authserver login page: password, then « Peut-être plus tard » on the offer."""
    page.wait_for_url(lambda url: url.startswith(services.auth_url + "/login"))
    landed = password_login(page, services.auth_url)
    if landed == "/passkeys/offer":
        page.get_by_role("button", name="Peut-être plus tard").click()


def _jwks(services: Services) -> dict:
    with urllib.request.urlopen(f"{services.auth_url}/.well-known/jwks.json", timeout=5) as r:
        return json.loads(r.read())


def test_code_flow_with_pkce_between_two_processes(page, account, watch):
    services = account
    certify(services.app)
    authorize_requests: list[str] = []
    page.on(
        "request",
        lambda r: authorize_requests.append(r.url) if "/oauth/authorize" in r.url else None,
    )
    page.goto(services.kit_url + "/")
    page.get_by_role("link", name="Je lance la démarche").click()
    _login_at_authserver(page, services)
    page.wait_for_url(lambda url: url.startswith(services.kit_url + "/") and "/callback" not in url)

    # The service's page: the four documents of the seed with their sizes.
    documents = page.locator("#documents li")
    assert documents.count() == 4
    text = page.locator("#documents").inner_text()
    for name, size in [
        ("Le document d'information", "332 Ko"),
        ("La notice d'information salarié", "688 Ko"),
        ("Le bulletin d'acceptation", "596 Ko"),
        ("La demande d'allocations", "869 Ko"),
    ]:
        assert name in text and size in text
    assert "Boulangerie Dupont" in page.content()

    # PKCE S256 was used by the service's Authlib client.
    query = parse_qs(urlsplit(authorize_requests[0]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]

    # Independent check of the id_token: PyJWT against the JWKS, not joserfc.
    id_token = (page.locator("#id-token").text_content() or "").strip()
    claims = verify_jwt(
        id_token, _jwks(services), audience=services.client["client_id"], issuer=services.auth_url
    )
    assert claims["certified"] is True and claims["siret"] == "73282932000074"
    assert claims["amr"] == ["pwd"] and claims["acr"] == "urn:authserver:pwd"
    assert claims["sub"] != USERNAME

    # A document downloads, as a PDF.
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger Le bulletin d'acceptation").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF-")

    # Logout from the service: RP-initiated, back on the service, authserver session over.
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url(lambda url: urlsplit(url).path == "/" and url.startswith(services.kit_url))
    page.get_by_role("link", name="Je lance la démarche").wait_for()
    answer = page.request.get(services.auth_url + "/auth/verify")
    assert answer.status == 401


def test_uncertified_account_gets_the_counsellor_message(page, account, watch):
    services = account
    page.goto(services.kit_url + "/")
    page.get_by_role("link", name="Je lance la démarche").click()
    _login_at_authserver(page, services)
    page.wait_for_url(lambda url: url.startswith(services.kit_url + "/") and "/callback" not in url)
    message = page.locator("#certification-required").inner_text()
    assert "vous devez disposer d'un espace certifié" in message
    assert "Vous allez être contacté par un conseiller France Travail" in message
    assert page.locator("#documents").count() == 0
    watch.allow_http_errors()
    answer = page.request.get(services.kit_url + "/documents/bulletin-acceptation")
    assert answer.status == 403 and "espace certifié" in answer.text()  # the seed's message


def test_logout_at_authserver_ends_the_service_session_by_back_channel(page, account, watch):
    services = account
    certify(services.app)
    page.goto(services.kit_url + "/login")
    _login_at_authserver(page, services)
    page.wait_for_url(lambda url: url.startswith(services.kit_url + "/") and "/callback" not in url)
    assert page.locator("#documents li").count() == 4

    page.goto(services.auth_url + "/account/sessions")
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url(at("/login"))
    # The kit hears of it through its back-channel endpoint, without the browser.
    page.goto(services.kit_url + "/")
    for _ in range(50):
        if page.get_by_role("link", name="Je lance la démarche").count():
            break
        page.wait_for_timeout(100)
        page.reload()
    assert page.get_by_role("link", name="Je lance la démarche").count() == 1


def test_withdrawing_the_service_from_my_sessions_logs_it_out(page, account, watch):
    services = account
    page.goto(services.kit_url + "/login")
    _login_at_authserver(page, services)
    page.wait_for_url(lambda url: url.startswith(services.kit_url + "/") and "/callback" not in url)
    assert page.get_by_role("button", name="Se déconnecter").count() == 1

    # Mon compte → « Mes sessions » → the service's card → « Retirer l'autorisation ».
    page.goto(services.auth_url + "/account")
    page.get_by_role("link", name="Mes sessions").click()
    page.wait_for_url(at("/account/sessions"))
    card = page.locator(".service-item", has_text="Kit CSP")
    card.get_by_role("button", name="Retirer l'autorisation").click()
    page.wait_for_url(at("/account/sessions"))
    assert "a été retirée" in page.content()
    assert page.locator(".service-item").count() == 0
    # The kit hears of it by back-channel; the authserver session itself stays open.
    page.goto(services.kit_url + "/")
    for _ in range(50):
        if page.get_by_role("link", name="Je lance la démarche").count():
            break
        page.wait_for_timeout(100)
        page.reload()
    assert page.get_by_role("link", name="Je lance la démarche").count() == 1
    assert page.request.get(services.auth_url + "/auth/verify").status == 200


def test_step_up_asks_for_a_passkey_login_first(page, account, watch):
    services = account
    certify(services.app)
    cdp, aid = add_virtual_authenticator(page)
    # A password login that enrols a passkey from the offer: the session is a password one.
    page.goto(services.auth_url + "/login")
    assert password_login(page, services.auth_url) == "/passkeys/offer"
    page.get_by_role("button", name="Activer", exact=True).click()
    page.wait_for_url(lambda url: path_of(page) not in ("/login", "/passkeys/offer"))
    verify = page.request.get(services.auth_url + "/auth/verify")
    assert verify.headers["x-auth-amr"] == "pwd"

    # The service asks for acr_values=urn:authserver:passkey: the login page asks for the
    # passkey (the autofill request answers at once with the virtual authenticator).
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.goto(services.kit_url + "/login?stepup=1")
    page.wait_for_url(lambda url: url.startswith(services.kit_url + "/") and "/callback" not in url)
    assert any("/login?" in url and "passkey=1" in url for url in seen), seen
    assert page.locator("#acr").inner_text() == "urn:authserver:passkey"
    assert page.locator("#amr").inner_text() == "hwk user"
    verify = page.request.get(services.auth_url + "/auth/verify")
    assert verify.headers["x-auth-amr"] == "hwk user"
    del cdp, aid
