"""Staff land on their own tool, in Chromium (issue 12: they landed on the employer espace,
« Votre espace n'est pas certifié »).

A password login goes (past « Activer » on the offer) to the tool's « Connexion par clé
d'accès exigée » page; the header links to the tool; after « Se déconnecter » the login page's
autofill request signs the staff member in with the new passkey (the virtual authenticator
answers it by itself), and that passkey login — answered by the fast path — opens the tool.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Live
from tests.e2e.helpers import at
from tests.e2e.test_first_login_browser import login_by_labels
from tests.establishments.test_flow import create_staff
from tests.fixtures_services import PAGE_TIMEOUT_MS, add_virtual_authenticator

CASES = {
    "counselor-1280": (
        "camille.conseil",
        "counselor",
        1280,
        "/counselor",
        "Certifications à traiter",
    ),
    "security-390": ("sam.secu", "security", 390, "/security", "Console de sécurité"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(CASES))
def test_staff_land_on_their_tool(browser, live: Live, case: str) -> None:
    username, role, width, tool, title = CASES[case]
    create_staff(live.app, username, role)
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    try:
        add_virtual_authenticator(page)
        login_by_labels(page, live.base, username, offer_answer="Activer")
        page.wait_for_url(at(tool))
        page.get_by_role("heading", name="Connexion par clé d'accès exigée").wait_for()
        assert page.get_by_text("Votre espace n'est pas certifié").count() == 0

        header_link = page.get_by_role("banner").get_by_role("link", name=title, exact=True)
        assert header_link.is_visible()
        assert header_link.get_attribute("href") == tool

        visited: list[str] = []
        page.on("framenavigated", lambda frame: visited.append(urlsplit(frame.url).path))
        page.get_by_role("banner").get_by_role("button", name="Se déconnecter").click()
        # Autofill: the passkey login lands on the tool, which opens (its own heading).
        page.get_by_role("heading", name=title, level=1).wait_for()
        assert "/login" in visited and visited[-1] == tool, visited
        assert "/espace" not in visited
    finally:
        context.close()
