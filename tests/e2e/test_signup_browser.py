"""The first path of a new employer, in a real headless Chromium, by the visible labels.

Sign up → confirmation page → activation link from the e-mail received by a real SMTP
server → "Félicitations…" → "Se connecter" → password login → (passkey offer: "Peut-être
plus tard") → /espace (or its first-login establishment step) → "Se déconnecter".
No console error and no Content-Security-Policy violation on any page along the way.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.services import LiveServer, free_port, text_of

USERNAME = "martin.dupont"
EMAIL = "martin.dupont@entreprise.fr"


def _watch_console(page) -> list[str]:
    """Collect console errors, CSP violations and uncaught exceptions of every page."""
    problems: list[str] = []

    def on_console(message) -> None:
        text = message.text
        if message.type == "error" or "Content Security Policy" in text:
            location = message.location or {}
            problems.append(f"console.{message.type}: {text} ({location.get('url', '?')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return problems


@pytest.mark.e2e
def test_signup_activate_login_logout_by_labels(page, smtp, make_app):
    port = free_port()
    base_url = f"http://localhost:{port}"
    app = make_app(AUTHSERVER_BASE_URL=base_url)
    server = LiveServer(app, port=port).start()
    try:
        problems = _watch_console(page)

        # Sign-up, as a person fills the form.
        page.goto(f"{base_url}/signup")
        page.get_by_label("Identifiant", exact=True).fill(USERNAME)
        page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
        page.get_by_label("Confirmation mot de passe", exact=True).fill(PASSWORD)
        civility = page.get_by_role("group", name="Civilité", exact=True)
        assert civility.get_by_label("Madame", exact=True).count() == 1
        civility.get_by_label("Monsieur", exact=True).check()
        page.get_by_label("Nom", exact=True).fill("Dupont")
        page.get_by_label("Prénom", exact=True).fill("Martin")
        page.get_by_label("Adresse e-mail", exact=True).fill(EMAIL)
        page.get_by_label("Téléphone", exact=True).fill("07 12 34 56 78")
        page.get_by_label("J'accepte les conditions générales d'utilisation", exact=True).check()
        page.get_by_role("button", name="Créer un compte", exact=True).click()

        # Confirmation page: an e-mail was sent.
        page.wait_for_load_state()
        main = page.get_by_role("main")
        assert re.search(r"e-?mail", main.inner_text(), re.IGNORECASE), main.inner_text()
        assert "/signup" not in page.url or "Confirmation" in main.inner_text()

        # The activation e-mail, received by the real SMTP server.
        messages = smtp.wait_for(1)
        assert len(messages) == 1
        assert smtp.envelopes[0][1] == [EMAIL]
        text = text_of(messages[0])
        activation = re.findall(rf"{re.escape(base_url)}/activate/\S+", text)
        assert len(activation) == 1, text
        assert re.fullmatch(rf"{re.escape(base_url)}/activate/[A-Za-z0-9_\-.~]+", activation[0])
        assert USERNAME in text

        page.goto(activation[0])
        main = page.get_by_role("main")
        assert main.get_by_text("Félicitations, votre adresse e-mail a été validée !").is_visible()
        main.get_by_role("link", name="Se connecter", exact=True).click()

        # Login by the labels of the login page.
        page.wait_for_url(f"{base_url}/login*")
        page.get_by_label("Identifiant", exact=True).fill(USERNAME)
        page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
        page.get_by_role("main").get_by_role("button", name="Se connecter", exact=True).click()

        # A new account without a passkey is first offered one (contract): not now.
        page.wait_for_url(re.compile(rf"{re.escape(base_url)}/(espace|passkeys/offer)"))
        if "/passkeys/offer" in page.url:
            page.get_by_role("button", name="Peut-être plus tard", exact=True).click()
        # Logged in: /espace, or first the establishment step of a brand-new account (its
        # /espace redirects there until a SIRET is attached). Either shows who is logged in.
        page.wait_for_url(re.compile(rf"{re.escape(base_url)}/(espace|establishment)"))
        assert USERNAME in page.locator("body").inner_text()

        # Logout.
        page.get_by_role("button", name="Se déconnecter", exact=True).click()
        page.wait_for_url(f"{base_url}/login*")
        assert page.get_by_role("button", name="Se déconnecter", exact=True).count() == 0
        page.goto(f"{base_url}/espace")
        assert "/espace" not in page.url, "still logged in after logout"

        assert problems == [], problems
    finally:
        server.stop()
