"""The seed's first login, in a real headless Debian Chromium, by the visible labels.

The account is created and activated over real HTTP (the activation link comes from the
e-mail received by a real SMTP server); then, in the browser: login → passkey offer
(`Peut-être plus tard`) → `/establishment` (SIRET typed with spaces, `Suivant`, the company
details, `Retour`, `Suivant`, `Valider`) → `/certification` → the espace. Certification by
a counsellor (who works in another browser context) or online (the development provider:
`Approuver`, or `Refuser` which falls back to the counsellor queue).
No console error and no Content-Security-Policy violation on any page along the way.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.conftest import CSRF_RE, PASSWORD
from tests.e2e.conftest import Live
from tests.establishments.test_flow import (
    active_establishments,
    create_staff,
    membership_row,
    spaced,
    user_row,
    wait_mail,
)
from tests.fixtures_services import PAGE_TIMEOUT_MS, add_virtual_authenticator
from tests.services import text_of

USERNAME = "martin.dupont"
EMAIL = "martin.dupont@entreprise.fr"
COUNSELOR = "camille.conseil"
GATED = "vous devez disposer d'un espace certifié"
CSP_KIT = "Proposer le Contrat de Sécurisation Professionnelle (CSP) : télécharger le kit CSP"


def watch(page) -> list[str]:
    """Console errors, CSP violations and uncaught exceptions of every page."""
    problems: list[str] = []

    def on_console(message) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            problems.append(f"console.{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return problems


def at(path: str):
    return lambda url: urlsplit(url).path == path


def path_of(page) -> str:
    return urlsplit(page.url).path


# --- Over HTTP: sign-up and activation --------------------------------------------------------


def signup_and_activate_over_http(live: Live, username: str = USERNAME) -> None:
    """A real HTTP client (urllib, with its own cookie jar) against the live server."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{live.base}/signup", timeout=10) as response:
        html = response.read().decode()
    csrf = CSRF_RE.search(html)
    assert csrf, "signup page without csrf-token"
    form = urllib.parse.urlencode(
        {
            "csrf_token": csrf.group(1),
            "username": username,
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "civility": "monsieur",
            "last_name": "Dupont",
            "first_name": "Martin",
            "email": f"{username}@entreprise.fr",
            "phone": "07 12 34 56 78",
            "cgu": "y",
        }
    ).encode()
    with opener.open(f"{live.base}/signup", data=form, timeout=10) as response:
        assert response.status == 200  # the confirmation page, after the redirect
    message = wait_mail(live.smtp, f"{username}@entreprise.fr", "")
    links = re.findall(rf"{re.escape(live.base)}/activate/\S+", text_of(message))
    assert len(links) == 1, text_of(message)
    with opener.open(links[0], timeout=10) as response:
        assert "Félicitations, votre adresse e-mail a été validée !" in response.read().decode()


# --- In the browser -----------------------------------------------------------------------------


def login_by_labels(
    page, base: str, username: str, offer_answer: str = "Peut-être plus tard"
) -> None:
    """Login page → passkey offer → `Peut-être plus tard` (or `Activer`)."""
    page.goto(f"{base}/login")
    page.get_by_label("Identifiant", exact=True).fill(username)
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url(at("/passkeys/offer"))
    page.get_by_role("button", name=offer_answer, exact=True).click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/passkeys/offer")


def attach_establishment(page, siret: str) -> None:
    """From `/establishment` to `/certification`, with a `Retour` on the way."""
    found = next(f for f in active_establishments() if f.siret == siret)
    assert path_of(page) == "/establishment"
    main = page.get_by_role("main")
    page.get_by_label("Numéro de SIRET", exact=True).fill(spaced(siret))
    main.get_by_role("button", name="Suivant", exact=True).click()
    page.wait_for_url(at("/establishment/confirm"))
    details = page.get_by_role("main").inner_text()
    for shown in (found.name, found.address, found.postal_code, found.city, found.naf_code):
        assert shown in details, (shown, details)

    # `Retour` (a button, as the contract says) goes back to the SIRET, still filled in as
    # it was typed, to correct it; `Suivant` again.
    assert page.get_by_role("main").get_by_role("link", name="Retour", exact=True).count() == 0
    page.get_by_role("main").get_by_role("button", name="Retour", exact=True).click()
    page.wait_for_url(at("/establishment"))
    typed = page.get_by_label("Numéro de SIRET", exact=True).input_value()
    assert typed == spaced(siret)
    page.get_by_role("main").get_by_role("button", name="Suivant", exact=True).click()
    page.wait_for_url(at("/establishment/confirm"))
    assert found.name in page.get_by_role("main").inner_text()

    page.get_by_role("main").get_by_role("button", name="Valider", exact=True).click()
    page.wait_for_url(at("/certification"))


def choose_certification(page, label: str) -> None:
    page.get_by_label(label, exact=True).check()
    page.get_by_role("main").get_by_role("button", name="Continuer", exact=True).click()


def open_tab(page, name: str):
    """Click a tab of the espace; return its (now visible) panel."""
    tab = page.get_by_role("tab", name=name, exact=True)
    tab.click()
    panel = page.locator(f"#{tab.get_attribute('aria-controls')}")
    panel.wait_for(state="visible")
    return panel


def assert_gated(page, gated: bool) -> None:
    panel = open_tab(page, "Mes services administratifs")
    kit = panel.get_by_text(CSP_KIT, exact=True)
    kit.wait_for()
    if gated:
        assert panel.get_by_text(GATED).first.is_visible()
        assert panel.get_by_role("link", name=CSP_KIT, exact=True).count() == 0
        assert page.get_by_text("Espace certifié", exact=True).count() == 0
    else:
        assert page.get_by_text(GATED).count() == 0
        assert panel.get_by_role("link", name=CSP_KIT, exact=True).is_visible()
        assert page.get_by_text("Espace certifié", exact=True).is_visible()


def counselor_page(browser, live: Live):
    """A counsellor logged in, in another browser context (its own cookies)."""
    create_staff(live.app, COUNSELOR, "counselor")
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    add_virtual_authenticator(page)
    # Staff tools need a passkey session (issue 11): password login, `Activer` on the offer,
    # then the console sends the password session to « Me connecter avec ma clé d'accès ».
    login_by_labels(page, live.base, COUNSELOR, offer_answer="Activer")
    page.goto(f"{live.base}/counselor")
    page.get_by_role("heading", name="Connexion par clé d'accès exigée").wait_for()
    page.get_by_role("link", name="Me connecter avec ma clé d'accès").click()
    page.wait_for_url(at("/account/reauth"))
    page.get_by_role("button", name="Confirmer avec ma clé d'accès").click()
    page.wait_for_url(at("/counselor"))
    page.get_by_role("heading", name="Certifications à traiter").wait_for()
    return context, page


def queue_rows(counselor):
    """The rows of the pending queue (not those of « Demandes traitées » below it)."""
    queue = counselor.get_by_role("table", name=re.compile(r"^Demandes de certification par un"))
    return queue.get_by_role("row")


# --- The tests --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_first_login_to_espace_then_certified_by_a_counselor(page, browser, live: Live) -> None:
    problems = watch(page)
    signup_and_activate_over_http(live)
    found = active_establishments()[0]

    login_by_labels(page, live.base, USERNAME)
    page.wait_for_url(at("/establishment"))
    attach_establishment(page, found.siret)

    choose_certification(page, "Certification par un conseiller")
    main = page.get_by_role("main")
    main.get_by_text("sous 24 hrs").wait_for()
    main.get_by_role("link", name="Continuer ma navigation", exact=True).click()
    page.wait_for_url(at("/espace"))

    # Mon espace personnel: the SIRET, the three tabs, the gated services.
    assert found.siret in page.locator("#espace-siret").inner_text().replace(" ", "")
    assert found.name in page.get_by_role("main").inner_text()
    for tab in ("Accueil", "Mes services de recrutement", "Mes services administratifs"):
        assert page.get_by_role("tab", name=tab, exact=True).is_visible()
    assert_gated(page, gated=True)
    recruitment = open_tab(page, "Mes services de recrutement")
    assert recruitment.get_by_role("link", name="Publier une offre en ligne").is_visible()

    # A counsellor certifies the account from the console.
    context, counselor = counselor_page(browser, live)
    try:
        counselor_problems = watch(counselor)
        row = queue_rows(counselor).filter(has_text=USERNAME)
        assert row.count() == 1
        assert found.siret in row.inner_text()
        row.get_by_role("link", name="Traiter").click()
        counselor.wait_for_url(re.compile(r"/counselor/requests/\d+$"))
        assert found.name in counselor.get_by_role("main").inner_text()
        counselor.get_by_role("button", name="Certifier le compte", exact=True).click()
        counselor.wait_for_url(at("/counselor"))
        counselor.get_by_text("Aucune demande en attente.").wait_for()
        assert counselor_problems == [], counselor_problems
    finally:
        context.close()

    # The user receives the e-mail, and the espace is certified.
    mail = wait_mail(live.smtp, EMAIL, "certifié")
    assert f"{live.base}/espace" in text_of(mail)
    page.reload()
    assert_gated(page, gated=False)
    assert user_row(live.app, USERNAME).certified_at is not None
    assert membership_row(live.app, USERNAME).role == "admin"
    assert problems == [], problems


@pytest.mark.e2e
def test_online_certification_approved(page, live: Live) -> None:
    problems = watch(page)
    signup_and_activate_over_http(live)
    login_by_labels(page, live.base, USERNAME)
    page.wait_for_url(at("/establishment"))
    attach_establishment(page, active_establishments()[1].siret)

    choose_certification(page, "Certification en ligne")
    page.wait_for_url(re.compile(r"/dev/identity/[^/]+$"))
    page.get_by_role("button", name="Approuver", exact=True).click()
    page.wait_for_url(at("/espace"))
    assert active_establishments()[1].siret in page.locator("#espace-siret").inner_text()
    assert_gated(page, gated=False)
    wait_mail(live.smtp, EMAIL, "certifié")
    assert problems == [], problems


@pytest.mark.e2e
def test_online_certification_refused_falls_back_to_the_counselor(
    page, browser, live: Live
) -> None:
    problems = watch(page)
    signup_and_activate_over_http(live)
    login_by_labels(page, live.base, USERNAME)
    page.wait_for_url(at("/establishment"))
    attach_establishment(page, active_establishments()[0].siret)

    choose_certification(page, "Certification en ligne")
    page.wait_for_url(re.compile(r"/dev/identity/[^/]+$"))
    page.get_by_role("button", name="Refuser", exact=True).click()
    page.wait_for_url(at("/certification/callback"))
    main = page.get_by_role("main")
    assert "conseiller" in main.inner_text()
    main.get_by_role("link", name="Continuer ma navigation", exact=True).click()
    page.wait_for_url(at("/espace"))
    assert_gated(page, gated=True)

    context, counselor = counselor_page(browser, live)
    try:
        assert queue_rows(counselor).filter(has_text=USERNAME).count() == 1
    finally:
        context.close()
    assert user_row(live.app, USERNAME).certified_at is None
    assert problems == [], problems
