"""« J'ai perdu ma clé d'accès » and the passkey-only sign-up in headless Chromium (issue 14).

An employer whose passkey lived on a lost phone asks for a link from a new computer, creates
a passkey there with its virtual authenticator, is logged in, alerted, and logs in with the
new passkey afterwards. A sign-up without a password makes its passkey at activation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from authserver import db
from authserver.accounts import helpdesk
from authserver.db import get_database
from authserver.models import SecurityEvent, User, WebAuthnCredential, utcnow
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


@pytest.mark.e2e
def test_passkey_only_sign_up(page, live) -> None:
    """A sign-up with no password: the box hides the password fields, the activation page
    creates the passkey with the device's unlock, and the employer is logged in."""
    watch = Watch(page)
    add_virtual_authenticator(page, transport="internal")
    page.goto(live.base + "/signup")
    page.get_by_label("Identifiant", exact=True).fill(USERNAME)
    page.get_by_label("Créer mon compte sans mot de passe", exact=False).check()
    assert not page.get_by_label("Mot de passe", exact=True).is_visible()
    page.get_by_role("group", name="Civilité", exact=True).get_by_label("Madame").check()
    page.get_by_label("Nom", exact=True).fill("Durand")
    page.get_by_label("Prénom", exact=True).fill("Claire")
    page.get_by_label("Adresse e-mail", exact=True).fill(EMAIL)
    page.get_by_label("Téléphone", exact=True).fill("07 12 34 56 78")
    page.get_by_label("J'accepte les conditions générales d'utilisation", exact=True).check()
    page.get_by_role("button", name="Créer un compte", exact=True).click()
    page.wait_for_url(at("/signup/confirmation"))

    mail = wait_mail(live.smtp, EMAIL, "Activez")
    page.goto(link_in(mail, "/activate/"))
    page.get_by_text("Félicitations, votre adresse e-mail a été validée !").wait_for()
    page.get_by_role("button", name="Créer ma clé d'accès").click()
    assert wait_logged_in(page) == "/establishment"
    with get_database(live.app).session_scope() as session:
        (user,) = session.scalars(select(User))
        assert user.password_hash is None
        assert len(list(session.scalars(select(WebAuthnCredential)))) == 1
    assert watch.unexpected() == []


def _recover_in_new_browser(browser, live, start) -> None:
    """A new computer: ``start(page)`` brings it to the recovery page, then the passkey is
    created with its own virtual authenticator and the employer lands logged in."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    computer = context.new_page()
    watch = Watch(computer)
    try:
        add_virtual_authenticator(computer, transport="internal")
        start(computer)
        computer.get_by_role("button", name="Créer ma nouvelle clé d'accès").click()
        computer.wait_for_url(at("/account/passkeys"))
        computer.get_by_text("Votre nouvelle clé d'accès est enregistrée").wait_for()
        wait_mail(live.smtp, EMAIL, "Nouvelle connexion à votre espace France Travail")
        assert watch.unexpected() == []
    finally:
        context.close()


@pytest.mark.e2e
def test_recovery_code_made_on_the_passkeys_page_then_used(browser, page, live) -> None:
    Actions(live.app.test_client(), live.smtp).create_active_account(USERNAME)
    cdp, aid = add_virtual_authenticator(page, transport="internal")
    enroll_from_offer(page, live.base)
    page.goto(live.base + "/account/passkeys")
    page.get_by_role("button", name="Générer mes codes de récupération").click()
    page.get_by_role("heading", name="Vos codes de récupération").wait_for()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    set_presence(cdp, aid, False)

    def start(computer) -> None:
        computer.goto(live.base + "/login")
        computer.get_by_role("link", name="J'ai perdu ma clé d'accès").click()
        computer.get_by_role("link", name="Utiliser un code de récupération").click()
        computer.get_by_label("Identifiant", exact=True).fill(USERNAME)
        computer.get_by_label("Code de récupération").fill(codes[3])
        computer.get_by_role("button", name="Continuer").click()
        computer.get_by_text("Code de récupération accepté").wait_for()

    _recover_in_new_browser(browser, live, start)


@pytest.mark.e2e
def test_counsellor_assisted_recovery_link(browser, page, live) -> None:
    Actions(live.app.test_client(), live.smtp).create_active_account(USERNAME)
    cdp, aid = add_virtual_authenticator(page, transport="internal")
    enroll_from_offer(page, live.base)
    set_presence(cdp, aid, False)
    with live.app.test_request_context(base_url=live.base):
        session = db.session()
        target = session.scalar(select(User).where(User.username == USERNAME))
        target.certified_at = utcnow()
        helpdesk.perform(
            session,
            target=target,
            actor=helpdesk.Actor(id=None, label="agent.conseil", role="counselor"),
            action="send_recovery_link",
            reason="Appel au 39 95 : identité vérifiée (CNI), téléphone perdu",
        )
        session.commit()
    mail = wait_mail(live.smtp, EMAIL, "Créez une nouvelle clé d'accès")
    assert "un conseiller France Travail" in text_of(mail)
    _recover_in_new_browser(
        browser, live, lambda computer: computer.goto(link_in(mail, "/recovery/"))
    )
