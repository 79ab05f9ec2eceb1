"""New-device alerts and « Ce n'était pas moi » in a real headless Debian Chromium (issue 4).

One owner browser context made the account's first login (no alert). Then another
context: a fresh one → exactly one alert e-mail at the real SMTP server; again → none;
cookies cleared → an alert; a forged device cookie → an alert. The owner opens the
alert's « Ce n'était pas moi » link, confirms, and the other context's very next page
load is the login page, where the password is refused until it is reset.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from itsdangerous import URLSafeSerializer

from authserver.alerts.devices import COOKIE_NAME, describe
from tests.alerts.alert_helpers import ALERT_SUBJECT, queued, received, wait_delivered
from tests.conftest import PASSWORD, Actions
from tests.e2e.conftest import Live
from tests.e2e.helpers import USERNAME, Watch, at, path_of
from tests.fixtures_services import PAGE_TIMEOUT_MS
from tests.services import text_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(live: Live) -> Live:
    """The shared live server, with the account already created and activated."""
    Actions(live.app.test_client(), live.smtp).create_active_account(USERNAME)
    return live


def new_page(browser):
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return page


def log_in(page, base: str) -> None:
    """Password login by the labels; past the passkey offer (`Peut-être plus tard`)."""
    page.goto(base + "/login")
    page.get_by_label("Identifiant", exact=True).fill(USERNAME)
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/login")
    if path_of(page) == "/passkeys/offer":
        page.get_by_role("button", name="Peut-être plus tard", exact=True).click()
        page.wait_for_url(lambda url: urlsplit(url).path != "/passkeys/offer")
    page.get_by_role("button", name="Se déconnecter").wait_for()


def log_out(page) -> None:
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url(at("/login"))


def alerts(live: Live) -> list:
    """Alerts received by the SMTP server, once the outbox has delivered everything."""
    wait_delivered(live.app)
    return received(live.smtp, ALERT_SUBJECT)


def test_new_device_alerts_and_not_me_in_chromium(browser, live):
    base = live.base
    owner = new_page(browser)
    owner_watch = Watch(owner)
    log_in(owner, base)  # the account's very first login: its browser becomes known
    assert queued(live.app, "new_device") == []
    assert alerts(live) == []

    # A fresh browser context: exactly one alert.
    other = new_page(browser)
    other_watch = Watch(other)
    other_watch.allow_http_errors()  # the refused login at the end answers 403
    log_in(other, base)
    (alert,) = alerts(live)
    text = text_of(alert)
    assert re.search(r"Date : \d\d/\d\d/\d{4} à \d\d:\d\d \(heure de Paris\)", text), text
    browser_name, system = describe(other.evaluate("navigator.userAgent"))
    assert f"Navigateur et système : {browser_name}, {system}" in text
    assert "Adresse IP : 127.0.0.1" in text
    links = re.findall(rf"{re.escape(base)}/alerts/not-me/[A-Za-z0-9_\-]+", text)
    assert len(links) == 1, text

    # The same context again: no alert.
    log_out(other)
    log_in(other, base)
    assert len(alerts(live)) == 1

    # Cookies cleared: an alert again.
    other.context.clear_cookies()
    log_in(other, base)
    assert len(alerts(live)) == 2

    # A forged device cookie (right name, wrong signature): an alert.
    log_out(other)
    forged = URLSafeSerializer("pas la clé du serveur 0123456789", salt="authserver.device-cookie")
    other.context.add_cookies(
        [{"name": COOKIE_NAME, "value": forged.dumps("F" * 43), "url": base, "httpOnly": True}]
    )
    log_in(other, base)
    assert len(alerts(live)) == 3
    logged_in_at = path_of(other)

    # The owner reports the first alert's login: confirmation page, then confirm.
    owner.goto(links[0])
    main = owner.get_by_role("main")
    main.get_by_role("heading", name="Ce n'était pas moi").wait_for()
    assert "127.0.0.1" in main.inner_text()
    main.get_by_role("button", name="Confirmer : ce n'était pas moi").click()
    owner.get_by_role("heading", name="Votre compte est sécurisé").wait_for()

    # The other browser is refused at once: its next page load is the login page.
    other.goto(base + logged_in_at)
    other.wait_for_url(at("/login"))
    assert other.get_by_role("button", name="Se déconnecter").count() == 0
    other.reload()
    assert path_of(other) == "/login"

    # The password no longer opens a session: a reset is required first.
    other.get_by_label("Identifiant", exact=True).fill(USERNAME)
    other.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    other.get_by_role("main").get_by_role("button", name="Se connecter", exact=True).click()
    other.get_by_role("heading", name="Vous devez choisir un nouveau mot de passe").wait_for()
    assert path_of(other) == "/login"
    # Issue 12: the link was already e-mailed; a new one is one button away, no address asked.
    notice = (
        other.get_by_role("main")
        .get_by_role("alert")
        .filter(has_text="Vous devez choisir un nouveau mot de passe")
    )
    assert "Réinitialisation de votre mot de passe France Travail" in notice.inner_text()
    assert notice.get_by_role("button", name="Recevoir un nouveau lien").is_visible()
    other.goto(base + "/espace")
    other.wait_for_url(at("/login"))

    # The reset link went to the owner's mailbox.
    wait_delivered(live.app)
    assert any("/password/reset/" in text_of(m) for m in live.smtp.messages)
    assert owner_watch.unexpected() == [], owner_watch.unexpected()
    assert other_watch.unexpected() == [], other_watch.unexpected()
    owner.context.close()
    other.context.close()
