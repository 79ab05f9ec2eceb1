"""Accessibility in a real headless Chromium (issue 12): axe-core over the main pages, and the
form feedback a keyboard, screen-reader or phone user depends on.

- axe-core (bundled by the ``axe-playwright-python`` package, no network) finds no violation,
  whatever its impact (an empty table header is only « minor »), on the employer's pages (a
  refused form included) and on the staff tools, at 1280 px and at 390 px (where tables scroll:
  their scroll region must be reachable by keyboard).
- A refused sign-up puts the focus on the error summary at the top; each of its links moves
  the focus to its field.
- A passkey ceremony shows « En attente de votre appareil » while the authenticator has not
  answered, with its button disabled; a ceremony that times out gives the button back.
- The SIRET lookup (up to 7 s on a remote directory) says it is searching, and the form is
  not sent twice.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from sqlalchemy import select

from authserver.db import get_database
from authserver.establishments.directory import DEMO_SIRET
from authserver.models import Device, SecurityEvent, User
from tests.conftest import PASSWORD, Actions
from tests.e2e.conftest import Live
from tests.e2e.helpers import MODAL_CREATE_STARTED, Watch, at, path_of, set_presence
from tests.establishments import local_http
from tests.establishments.test_flow import (
    attach,
    choose_certification,
    create_staff,
    employer,
    spaced,
)
from tests.fixtures_services import PAGE_TIMEOUT_MS, add_virtual_authenticator
from tests.services import LiveServer, free_port

pytestmark = pytest.mark.e2e

USERNAME = "martin.dupont"
WIDTHS = (1280, 390)
AXE = Axe()


def violations(page) -> list[str]:
    """axe-core's findings on the page as it is now, one line each."""
    found = AXE.run(page).response["violations"]
    return [
        f"{path_of(page)} @{page.viewport_size['width']}px {v['id']} ({v['impact']}): "
        + "; ".join(" ".join(node["target"]) for node in v["nodes"][:5])
        for v in found
    ]


def audit(page, found: list[str]) -> None:
    """axe at both widths; the page is left at 1280 px."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        found.extend(violations(page))
    page.set_viewport_size({"width": 1280, "height": 900})


def password_login(page, base: str, username: str, offer_answer: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Identifiant", exact=True).fill(username)
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/login")
    if path_of(page) == "/passkeys/offer":
        page.get_by_role("button", name=offer_answer, exact=True).click()
        page.wait_for_url(lambda url: urlsplit(url).path != "/passkeys/offer")


def staff_page(browser, live: Live, username: str, role: str, path: str):
    """A staff member with a passkey session (issue 11) on ``path``, in its own context."""
    create_staff(live.app, username, role)
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    add_virtual_authenticator(page)
    password_login(page, live.base, username, offer_answer="Activer")
    page.goto(live.base + path)
    if page.get_by_role("heading", name="Connexion par clé d'accès exigée").count():
        page.get_by_role("link", name="Me connecter avec ma clé d'accès").click()
        page.wait_for_url(at("/account/reauth"))
        page.get_by_role("button", name="Confirmer avec ma clé d'accès").click()
        page.wait_for_url(at(path))
    return context, page


@pytest.fixture
def account(live: Live) -> Live:
    """The live server with the employer's account created and activated, and something for
    the staff tools to show: failed logins, an alert, a request for a counsellor."""
    actions = Actions(live.app.test_client(), live.smtp)
    actions.create_active_account(USERNAME)
    for _ in range(2):
        actions.login(USERNAME, "not-the-password-123")
    waiting = employer(live.app, live.smtp, "claire.attente")
    assert attach(waiting, DEMO_SIRET).status_code == 302
    assert choose_certification(waiting, "counselor").status_code == 302
    with get_database(live.app).session_scope() as session:
        user = session.scalar(select(User).where(User.username == "claire.attente"))
        device = session.scalar(select(Device).where(Device.user_id == user.id))
        details = {"device_id": device.id, "ip": "203.0.113.9", "method": "password"}
        session.add(SecurityEvent(kind="not_me", severity="high", user_id=user.id, details=details))
    return live


# --- axe-core -----------------------------------------------------------------------------------


def test_employer_pages_have_no_axe_violation(page, account: Live) -> None:
    base, found = account.base, []
    page.goto(f"{base}/signup")
    page.get_by_role("button", name="Créer un compte", exact=True).click()
    page.locator("#error-summary").wait_for()
    audit(page, found)
    page.goto(f"{base}/login")
    audit(page, found)

    password_login(page, base, USERNAME, offer_answer="Peut-être plus tard")
    assert path_of(page) == "/establishment"
    page.get_by_role("main").get_by_role("button", name="Suivant", exact=True).click()
    page.locator("#error-summary").wait_for()
    audit(page, found)
    for path in ("/account", "/account/passkeys"):
        page.goto(base + path)
        audit(page, found)
    assert found == []


def test_staff_tools_have_no_axe_violation(browser, account: Live) -> None:
    """An administrator reaches both tools: the console and the counsellor's queue."""
    found: list[str] = []
    context, page = staff_page(browser, account, "alex.admin", "admin", "/security/events")
    try:
        audit(page, found)
        page.goto(f"{account.base}/security")
        audit(page, found)
        page.get_by_role("link", name="Alerte n°").first.click()
        page.wait_for_url(lambda url: urlsplit(url).path.startswith("/security/alerts/"))
        audit(page, found)
        page.goto(f"{account.base}/counselor")
        page.get_by_role("cell", name="claire.attente").wait_for()
        audit(page, found)
    finally:
        context.close()
    assert found == []


# --- The error summary --------------------------------------------------------------------------


def focused_id(page) -> str:
    return page.evaluate("() => document.activeElement && document.activeElement.id")


def test_a_refused_signup_focuses_the_summary_whose_links_focus_the_fields(page, live) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{live.base}/signup")
    page.get_by_label("Identifiant", exact=True).fill("x")
    page.get_by_label("Adresse e-mail", exact=True).fill("pas-une-adresse")
    page.get_by_role("button", name="Créer un compte", exact=True).click()

    summary = page.get_by_role("alert").filter(has_text="Le formulaire contient")
    summary.wait_for()
    page.wait_for_function("() => document.activeElement.id === 'error-summary'")
    assert summary.get_by_role("heading").inner_text() == "Le formulaire contient 8 erreurs"
    links = summary.get_by_role("link")
    # In the page's order; the same sentences stay next to their fields (the contract).
    targets = [
        "username",
        "password",
        "civility-0",
        "last_name",
        "first_name",
        "email",
        "phone",
        "cgu",
    ]
    assert [links.nth(n).get_attribute("href") for n in range(8)] == [f"#{t}" for t in targets]
    assert page.locator("#email-error").inner_text() == links.nth(5).inner_text()
    assert "Adresse e-mail invalide" in links.nth(5).inner_text()

    # Tab goes from the summary to its first link; each link focuses its field.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.getAttribute('href')") == "#username"
    for name, field in (
        ("Adresse e-mail invalide", "email"),
        ("Veuillez choisir votre civilité", "civility-0"),
        ("conditions générales", "cgu"),
    ):
        page.evaluate("() => window.scrollTo(0, 0)")
        summary.get_by_role("link", name=name).click()
        assert focused_id(page) == field
        assert page.locator(f"#{field}").is_visible()


# --- Waiting for the passkey --------------------------------------------------------------------


def test_passkey_button_shows_a_waiting_state_until_the_device_answers(page, live) -> None:
    Actions(live.app.test_client(), live.smtp).create_active_account(USERNAME)
    watch = Watch(page)  # records the WebAuthn calls
    cdp, aid = add_virtual_authenticator(page)
    page.clock.install()
    password_login(page, live.base, USERNAME, offer_answer="Peut-être plus tard")
    page.goto(f"{live.base}/account/passkeys")
    add = page.get_by_role("button", name="Ajouter une clé d'accès", exact=True)
    waiting = page.get_by_role("status").filter(has_text="En attente de votre appareil")

    # Nobody touches the authenticator: the page waits, and says so.
    set_presence(cdp, aid, False)
    add.click()
    page.wait_for_function(MODAL_CREATE_STARTED)
    waiting.wait_for()
    assert add.is_disabled()
    assert add.get_attribute("aria-describedby") == waiting.get_attribute("id")
    # Its 5 minutes are over: the message goes, the button comes back, the error is shown.
    page.clock.run_for("05:01")
    page.locator("#passkey-message").wait_for(state="visible")
    assert add.is_enabled()
    assert waiting.count() == 0

    # The authenticator answers: the passkey is made.
    set_presence(cdp, aid, True)
    with page.expect_response(lambda r: r.url.endswith("/webauthn/register/verify")) as verify:
        add.click()
    assert verify.value.status == 200
    assert watch.unexpected() == []


# --- The SIRET lookup ---------------------------------------------------------------------------


class SlowDirectory(BaseHTTPRequestHandler):
    """A company directory that takes half a second to answer that it is down (three times:
    the adapter tries again)."""

    def do_GET(self) -> None:
        time.sleep(0.5)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


# What the page showed while its POST was on its way, kept in sessionStorage: the next page
# replaces this one, and Playwright waits for that navigation before reading the page again.
OBSERVE_BUSY = """() => {
  const status = document.querySelector("[data-busy-status]");
  const button = document.querySelector("form[data-busy-message] button[type=submit]");
  new MutationObserver(() => {
    sessionStorage.setItem("busy", JSON.stringify([status.textContent, button.disabled]));
  }).observe(status, { childList: true, characterData: true, subtree: true });
}"""


def test_the_siret_lookup_shows_its_progress_and_is_sent_once(
    page, make_app, smtp, monkeypatch
) -> None:
    local_http.without_proxies(monkeypatch)
    directory = local_http.serve(SlowDirectory)
    port = free_port()
    base = f"http://localhost:{port}"
    app = make_app(
        AUTHSERVER_BASE_URL=base,
        AUTHSERVER_DIRECTORY="recherche-entreprises",
        AUTHSERVER_DIRECTORY_URL=f"http://127.0.0.1:{directory.server_port}",
    )
    server = LiveServer(app, port=port).start()
    try:
        Actions(app.test_client(), smtp).create_active_account(USERNAME)
        password_login(page, base, USERNAME, offer_answer="Peut-être plus tard")
        assert path_of(page) == "/establishment"
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.get_by_label("Numéro de SIRET", exact=True).fill(spaced(DEMO_SIRET))
        page.evaluate(OBSERVE_BUSY)
        # Two clicks, the second once the first request is on its way (a person who thinks
        # the first did not work): one request, the button disabled, the message shown until
        # the directory's answer (here: unavailable, after its retries) replaces the page.
        button = page.get_by_role("main").get_by_role("button", name="Suivant", exact=True)
        box = button.bounding_box()
        assert box is not None
        with page.expect_response(lambda r: urlsplit(r.url).path == "/establishment"):
            with page.expect_request(lambda r: r.method == "POST"):
                page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.keyboard.press("Enter")
        page.locator("#siret-error").wait_for()
        assert [urlsplit(url).path for url in posts] == ["/establishment"]
        shown = json.loads(page.evaluate("() => sessionStorage.getItem('busy')") or "null")
        assert shown == [
            "Recherche de votre entreprise dans l'annuaire des entreprises… "
            "Cela peut prendre quelques secondes.",
            True,
        ]
        # The new page's form is usable, and says nothing of a search.
        assert page.get_by_role("main").get_by_role("button", name="Suivant").is_enabled()
        assert page.locator("[data-busy-status]").inner_text() == ""
    finally:
        server.stop()
        local_http.close(directory, threading.Event())
