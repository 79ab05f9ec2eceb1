"""« J'ai perdu ma clé d'accès » in headless Chromium (issue 14): an employer whose passkey
lived on a lost phone asks for a link from a new computer, creates a passkey there with its
virtual authenticator, is logged in, alerted, and logs in with the new passkey afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from authserver.db import get_database
from authserver.models import SecurityEvent, WebAuthnCredential
from tests.conftest import Actions, link_in
from tests.e2e.helpers import (
    USERNAME,
    Watch,
    at,
    enroll_from_offer,
    logout_into_autofill,
    set_presence,
    wait_logged_in,
)
from tests.establishments.test_flow import wait_mail
from tests.fixtures_services import PAGE_TIMEOUT_MS, add_virtual_authenticator
from tests.services import text_of

EMAIL = f"{USERNAME}@entreprise.fr"


@pytest.mark.e2e
def test_lost_passkey_recovered_on_a_new_computer(browser, page, live) -> None:
    Actions(live.app.test_client(), live.smtp).create_active_account(USERNAME)
    cdp, aid = add_virtual_authenticator(page, transport="internal")
    enroll_from_offer(page, live.base)  # the phone that will be lost
    set_presence(cdp, aid, False)
    page.context.close()

    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    computer = context.new_page()
    watch = Watch(computer)
    try:
        add_virtual_authenticator(computer, transport="internal")
        computer.goto(live.base + "/login")
        computer.get_by_role("link", name="J'ai perdu ma clé d'accès").click()
        computer.wait_for_url(at("/recovery"))
        computer.get_by_label("Identifiant", exact=True).fill(USERNAME)
        computer.get_by_role("button", name="Recevoir un lien de récupération").click()
        computer.get_by_role("heading", name="Demande enregistrée").wait_for()

        mail = wait_mail(live.smtp, EMAIL, "Créez une nouvelle clé d'accès")
        computer.goto(link_in(mail, "/recovery/"))
        computer.get_by_role("button", name="Créer ma nouvelle clé d'accès").click()
        computer.wait_for_url(at("/account/passkeys"))
        computer.get_by_text("Votre nouvelle clé d'accès est enregistrée").wait_for()
        with get_database(live.app).session_scope() as session:
            assert len(list(session.scalars(select(WebAuthnCredential)))) == 2
            kinds = list(session.scalars(select(SecurityEvent.kind)))
        assert "account_recovery" in kinds
        alert = wait_mail(live.smtp, EMAIL, "Nouvelle connexion à votre espace France Travail")
        assert "J'ai perdu ma clé d'accès" in text_of(alert)

        # The new computer's passkey is a way in of its own (the login page's autofill
        # request answers at once with it).
        assert logout_into_autofill(computer).ok
        wait_logged_in(computer)
        assert watch.unexpected() == []
    finally:
        context.close()
