"""New-device recognition and the alert e-mail (contract, « E-mails »), over HTTP.

The very first login of a new account makes its browser known without an alert; every
later successful login from a browser without a known device cookie sends exactly one
alert: no cookie, cookies deleted, a forged cookie, another account's genuine cookie, a new
browser; by password or by passkey. The readable browser and system come from ua-parser.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import render_template
from itsdangerous import URLSafeSerializer

from authserver.alerts.devices import (
    COOKIE_NAME,
    browser_token,
    cookie_value,
    describe,
    new_token,
)
from authserver.models import utcnow
from authserver.web import PARIS
from tests.alerts.alert_helpers import (
    ALERT_SUBJECT,
    BASE_URL,
    CHROME_WINDOWS,
    EDGE_WINDOWS,
    EMAIL,
    FIREFOX_LINUX,
    SAFARI_IOS,
    USERNAME,
    account_with_first_login,
    alerts_queued,
    browser,
    devices_of,
    html_links,
    login_ok,
    logout,
    not_me_link,
    queued,
    received_alerts,
    security_events,
)
from tests.services import html_of, text_of

# --------------------------------------------------------------------------- describe()

USER_AGENTS = [
    (CHROME_WINDOWS, ("Chrome 131", "Windows 10")),
    (SAFARI_IOS, ("Mobile Safari 17.5", "iOS 17.5")),
    (FIREFOX_LINUX, ("Firefox 133", "Linux")),
    (EDGE_WINDOWS, ("Edge 131", "Windows 10")),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        ("Safari 17.5", "Mac OS X 10.15"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/131.0.6778.135 Mobile Safari/537.36",
        ("Chrome Mobile 131", "Android 14"),
    ),
    ("", ("Navigateur inconnu", "Système inconnu")),
    ("n'importe quoi ;;; (((", ("Navigateur inconnu", "Système inconnu")),
    ("Werkzeug/3.1.3", ("Navigateur inconnu", "Système inconnu")),
    ("\x00\ufffd" * 200, ("Navigateur inconnu", "Système inconnu")),
]


@pytest.mark.parametrize(("ua", "expected"), USER_AGENTS)
def test_describe_real_user_agents(ua, expected):
    assert describe(ua) == expected


def test_describe_keeps_within_the_columns():
    browser_name, system = describe("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0" + "x" * 600)
    assert len(browser_name) <= 64 and len(system) <= 64


def test_the_device_row_keeps_what_the_issue_asks(app, smtp):
    first = account_with_first_login(app, smtp)
    (device,) = devices_of(app)
    assert (device.browser, device.system) == ("Firefox 133", "Linux")
    assert device.last_ip == "192.0.2.10"
    assert device.first_seen_at == device.last_seen_at
    assert len(device.cookie_hash) == 32
    cookie = first.client.get_cookie(COOKIE_NAME)
    assert cookie is not None and cookie.http_only
    assert cookie.expires is not None and cookie.expires > datetime.now(UTC) + timedelta(days=360)
    assert cookie.value not in device.cookie_hash.hex()


# --------------------------------------------------------------------------- when to alert


def test_first_login_of_a_new_account_makes_no_alert(app, smtp):
    account_with_first_login(app, smtp)
    assert alerts_queued(app) == 0
    assert security_events(app, "new_device") == []
    assert len(devices_of(app)) == 1
    assert received_alerts(app, smtp) == []


def test_the_same_browser_again_makes_no_alert(app, smtp):
    first = account_with_first_login(app, smtp)
    logout(first)
    login_ok(first)
    login_ok(first)
    assert alerts_queued(app) == 0
    assert len(devices_of(app)) == 1


def test_a_new_browser_alerts_once_then_is_known(app, smtp):
    account_with_first_login(app, smtp)
    other = browser(app, smtp, ua=SAFARI_IOS, ip="203.0.113.9")
    login_ok(other)
    assert alerts_queued(app) == 1
    logout(other)
    login_ok(other)
    assert alerts_queued(app) == 1
    assert len(received_alerts(app, smtp)) == 1
    assert len(devices_of(app)) == 2


def test_deleted_cookies_alert_again(app, smtp):
    first = account_with_first_login(app, smtp)
    first.client.delete_cookie(COOKIE_NAME)
    logout(first)
    login_ok(first)
    assert alerts_queued(app) == 1


@pytest.mark.parametrize(
    "forged",
    [
        URLSafeSerializer(
            "une autre clé secrète 0123456789", salt="authserver.device-cookie"
        ).dumps("A" * 43),
        "pas-un-cookie-signé",
        "x" * 500,
    ],
)
def test_a_forged_device_cookie_alerts(app, smtp, forged):
    first = account_with_first_login(app, smtp)
    logout(first)
    first.client.set_cookie(COOKIE_NAME, forged)
    login_ok(first)
    assert alerts_queued(app) == 1


def test_another_accounts_genuine_cookie_alerts(app, smtp):
    """A browser known for claire.martin is not a known device of martin.dupont."""
    account_with_first_login(app, smtp, USERNAME)
    colleague = account_with_first_login(app, smtp, "claire.martin")
    logout(colleague)
    login_ok(colleague, USERNAME)
    (alert,) = queued(app, "new_device")
    assert alert.recipient == EMAIL
    # ...and the cookie still names the colleague's device for her: no alert for her.
    logout(colleague)
    login_ok(colleague, "claire.martin")
    assert alerts_queued(app) == 1


def test_a_failed_login_from_a_new_browser_makes_no_alert(app, smtp):
    account_with_first_login(app, smtp)
    stranger = browser(app, smtp, ip="198.51.100.20")
    assert stranger.login(USERNAME, "ce n'est pas le bon mot de passe").status_code == 401
    assert alerts_queued(app) == 0


def test_a_passkey_login_from_a_new_browser_alerts_with_its_method(app, smtp):
    from tests.webauthn.test_api import Browser, authenticator

    first = account_with_first_login(app, smtp)
    auth = authenticator()
    Browser(first).register(auth)
    stranger = Browser(browser(app, smtp, ua=SAFARI_IOS, ip="203.0.113.40"))
    assert stranger.login(auth).status_code == 200
    (message,) = received_alerts(app, smtp)
    assert "Méthode de connexion : clé d'accès (sans mot de passe)" in text_of(message)
    assert "203.0.113.40" in text_of(message)
    (event,) = security_events(app, "new_device")
    assert event.details["method"] == "passkey"


# --------------------------------------------------------------------------- the e-mail


def test_the_alert_email(app, smtp):
    account_with_first_login(app, smtp)
    before = utcnow()
    login_ok(browser(app, smtp, ua=CHROME_WINDOWS, ip="203.0.113.9"))
    (message,) = received_alerts(app, smtp)
    assert message["Subject"] == ALERT_SUBJECT
    assert message["To"] == EMAIL
    text = text_of(message)
    html = html_of(message)

    # Date and time in Europe/Paris, to the minute of the login.
    found = re.search(r"Date : (\d\d/\d\d/\d{4}) à (\d\d:\d\d) \(heure de Paris\)", text)
    assert found, text
    shown = datetime.strptime(" ".join(found.groups()), "%d/%m/%Y %H:%M").replace(tzinfo=PARIS)
    assert before.astimezone(PARIS).replace(second=0, microsecond=0) <= shown <= utcnow()
    assert "Navigateur et système : Chrome 131, Windows 10" in text
    assert "Adresse IP : 203.0.113.9" in text
    assert "Méthode de connexion : mot de passe" in text
    assert USERNAME in text

    # The links: « Ce n'était pas moi », the seed's « En cas de doute », Information sécurité.
    link = not_me_link(message)
    assert re.fullmatch(rf"{re.escape(BASE_URL)}/alerts/not-me/[A-Za-z0-9_\-]{{40,}}", link)
    assert "En cas de doute : changez immédiatement votre mot de passe" in text
    assert f"{BASE_URL}/password/forgot" in text
    assert f"Information sécurité : {BASE_URL}/securite" in text
    assert "Vous recevez ce message à chaque fois que" in text
    assert "il peut s'agir d'un fraudeur" in text

    # The HTML part says the same, with the same links.
    for needle in ("Chrome 131, Windows 10", "203.0.113.9", "mot de passe", "En cas de doute"):
        assert needle in html
    assert {link, f"{BASE_URL}/password/forgot", f"{BASE_URL}/securite"} <= set(html_links(message))


@pytest.mark.parametrize(
    ("moment", "shown"),
    [
        (datetime(2026, 1, 15, 23, 30, tzinfo=UTC), "16/01/2026 à 00:30 (heure de Paris)"),
        (datetime(2026, 7, 14, 8, 5, tzinfo=UTC), "14/07/2026 à 10:05 (heure de Paris)"),
    ],
)
def test_the_alert_time_is_paris_time_winter_and_summer(app, moment, shown):
    with app.test_request_context():
        for part in ("txt", "html"):
            body = render_template(
                f"emails/new_device.{part}",
                user={"username": USERNAME},
                when=moment,
                browser="Firefox 133",
                system="Linux",
                ip="192.0.2.1",
                method="mot de passe",
                not_me_link="x",
                security_link="y",
                forgot_link="z",
                subject=ALERT_SUBJECT,
            )
            assert shown in body


def test_the_alert_raises_a_low_priority_console_alert(app, smtp):
    account_with_first_login(app, smtp)
    login_ok(browser(app, smtp, ua=EDGE_WINDOWS, ip="203.0.113.9"))
    (event,) = security_events(app, "new_device")
    assert (event.severity, event.status, event.ip) == ("low", "open", "203.0.113.9")
    assert event.details["browser"] == "Edge 131"
    assert event.details["system"] == "Windows 10"
    assert event.details["device_id"] == devices_of(app)[-1].id


def test_a_device_cookie_is_checked_once_and_a_forged_one_never_remembered():
    """Genuine cookies' answers are cached per worker (the login hot path); forged ones are
    refused every time and take no room in the cache, so they cannot push genuine ones out."""
    from authserver.alerts import devices

    key = "test-secret-key-0123456789abcdef"
    token = "t" * 43
    genuine = URLSafeSerializer(key, salt="authserver.device-cookie").dumps(token)
    devices._checked.cache_clear()
    assert devices.browser_token(genuine, key=key) == token
    assert devices.browser_token(genuine, key=key) == token
    assert devices._checked.cache_info().hits == 1
    for forged in (genuine[:-1] + ("A" if genuine[-1] != "A" else "B"), "x.y", genuine + "0"):
        assert devices.browser_token(forged, key=key) is None
    assert devices.browser_token(genuine, key="another-key-0123456789abcdef") is None
    wrong_shape = URLSafeSerializer(key, salt="authserver.device-cookie").dumps("short")
    assert devices.browser_token(wrong_shape, key=key) is None
    assert devices._checked.cache_info().currsize == 1


def test_a_device_cookie_is_the_one_itsdangerous_writes_and_reads():
    """``cookie_value`` writes the cookie without itsdangerous' serializer (no compression
    attempt, its signer built once): every browser's cookie stays readable, before and
    after, under the current key and a rotated one."""
    for key in ("k" * 64, "an other secret key"):
        serializer = URLSafeSerializer(key, salt="authserver.device-cookie")
        for _ in range(2000):
            token = new_token()
            cookie = cookie_value(token, key)
            assert cookie == serializer.dumps(token)
            assert browser_token(cookie, key=key) == token
            assert browser_token(cookie, key="new key", fallbacks=[key]) == token
            assert browser_token(cookie, key="new key") is None
