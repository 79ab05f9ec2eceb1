"""« J'ai perdu ma clé d'accès » over HTTP (issue 14): the e-mailed link enrols a new passkey
(not a password), is single-use and short-lived, opens a session, and always alerts."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from authserver import settings_of
from authserver.db import get_database
from authserver.models import (
    ActionToken,
    AuthSession,
    LoginEvent,
    RecoveryCode,
    SecurityEvent,
    User,
    WebAuthnCredential,
    utcnow,
)
from tests.alerts.console_helpers import add_user, client_as
from tests.conftest import csrf_of, link_in, path_of
from tests.establishments.test_flow import mails_to, wait_mail
from tests.services import SMTPServer, text_of
from tests.softauthn import SoftAuthenticator
from tests.staff_login import enrol_passkey, login_in

USERNAME = "paul.perdu"
EMAIL = f"{USERNAME}@example.fr"
RECOVERY_SUBJECT = "Créez une nouvelle clé d'accès"
ALERT_SUBJECT = "Nouvelle connexion à votre espace France Travail"


def without_csrf(html: str) -> str:
    """The page with its CSRF tokens (meta and hidden fields) blanked out."""
    return re.sub(r'(csrf[-_]token"[^>]*(?:content|value)=")[^"]+', r"\1", html)


def ask_link(client: FlaskClient, **typed: str):
    page = client.get("/recovery")
    assert page.status_code == 200
    data = {"csrf_token": csrf_of(page.get_data(as_text=True)), "username": "", "email": ""}
    return client.post("/recovery", data={**data, **typed})


def recover(app: Flask, client: FlaskClient, link: str, auth: SoftAuthenticator):
    page = client.get(link)
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    html = page.get_data(as_text=True)
    token = link.rsplit("/", 1)[1]
    headers = {"X-CSRFToken": csrf_of(html)}
    options = client.post("/webauthn/recovery/options", json={"token": token}, headers=headers)
    assert options.status_code == 200, options.get_data(as_text=True)
    return client.post(
        "/webauthn/recovery/verify",
        json={"token": token, "credential": auth.register(options.get_json())},
        headers=headers,
    )


def new_authenticator(app: Flask) -> SoftAuthenticator:
    settings = settings_of(app)
    return SoftAuthenticator(rp_id=settings.rp_id, origin=settings.origins[0])


@pytest.fixture
def lost(app: Flask, smtp: SMTPServer) -> SoftAuthenticator:
    """An employer who enrolled a passkey (then lost it), and logged in from this browser."""
    add_user(app, USERNAME)
    auth = enrol_passkey(app, client_as(app, smtp, USERNAME, passkey=False))
    smtp.clear()
    return auth


def rows(app: Flask, statement) -> list:
    with get_database(app).session_scope() as session:
        found = list(session.scalars(statement))
        session.expunge_all()
        return found


def test_the_link_enrols_a_new_passkey_logs_in_and_alerts(
    app: Flask, smtp: SMTPServer, lost: SoftAuthenticator
) -> None:
    browser = app.test_client()
    done = ask_link(browser, username=USERNAME)
    assert done.status_code == 200
    assert "Demande enregistrée" in done.get_data(as_text=True)
    mail = wait_mail(smtp, EMAIL, RECOVERY_SUBJECT)
    assert "15 minutes" in text_of(mail)
    link = path_of(link_in(mail, "/recovery/"))

    new = new_authenticator(app)
    verified = recover(app, browser, link, new)
    assert verified.status_code == 200, verified.get_data(as_text=True)
    assert verified.get_json() == {"redirect": "/account/passkeys"}
    # Logged in, with a passkey session, and the new passkey stored beside the lost one.
    assert browser.get("/account/passkeys").status_code == 200
    assert len(rows(app, select(WebAuthnCredential))) == 2
    # The alert (contract subject, recovery wording), a security event, the login's reason.
    alert = wait_mail(smtp, EMAIL, ALERT_SUBJECT)
    assert "J'ai perdu ma clé d'accès" in text_of(alert)
    assert "/alerts/not-me/" in text_of(alert)
    (event,) = rows(app, select(SecurityEvent).where(SecurityEvent.kind == "account_recovery"))
    assert event.severity == "medium"
    last = rows(app, select(LoginEvent).order_by(LoginEvent.id.desc()).limit(1))[0]
    assert (last.method, last.outcome, last.reason) == ("passkey", "success", "recovery")
    wait_mail(smtp, EMAIL, "ajoutée")  # « Une clé d'accès a été ajoutée »
    # The new passkey logs in; no password was set or asked.
    login_in(app.test_client(), new)
    # Single use: the link is spent.
    again = app.test_client().get(link)
    assert again.status_code == 410
    assert "déjà été utilisé" in unescape(again.get_data(as_text=True))


def test_a_known_browser_is_alerted_too(
    app: Flask, smtp: SMTPServer, lost: SoftAuthenticator
) -> None:
    browser = client_as(app, smtp, USERNAME, passkey=False)  # its device is known
    smtp.clear()
    ask_link(browser, email=EMAIL)
    link = path_of(link_in(wait_mail(smtp, EMAIL, RECOVERY_SUBJECT), "/recovery/"))
    assert recover(app, browser, link, new_authenticator(app)).status_code == 200
    wait_mail(smtp, EMAIL, ALERT_SUBJECT)


def test_unknown_or_locked_accounts_get_the_same_answer_and_no_mail(
    app: Flask, smtp: SMTPServer
) -> None:
    add_user(app, "luc.verrou", locked=True)
    browser = app.test_client()
    known = ask_link(browser, username="luc.verrou")
    unknown = ask_link(browser, username="personne.inconnue")
    # The same page but for the CSRF token, whose signature is timed to the second (the two
    # answers straddled a second under a loaded suite).
    assert without_csrf(known.get_data(as_text=True)) == without_csrf(
        unknown.get_data(as_text=True)
    )
    add_user(app, "temoin")  # a control request, queued after the two others
    ask_link(browser, username="temoin")
    wait_mail(smtp, "temoin@example.fr", RECOVERY_SUBJECT)
    assert mails_to(smtp, "luc.verrou@example.fr") == []


def test_expired_link_and_failed_ceremony(
    app: Flask, smtp: SMTPServer, lost: SoftAuthenticator
) -> None:
    browser = app.test_client()
    ask_link(browser, username=USERNAME)
    link = path_of(link_in(wait_mail(smtp, EMAIL, RECOVERY_SUBJECT), "/recovery/"))
    token = link.rsplit("/", 1)[1]
    html = browser.get(link).get_data(as_text=True)
    headers = {"X-CSRFToken": csrf_of(html)}
    # A ceremony that fails does not spend the link.
    options = browser.post("/webauthn/recovery/options", json={"token": token}, headers=headers)
    bad = new_authenticator(app).register(options.get_json())
    bad["response"]["clientDataJSON"] = bad["response"]["clientDataJSON"][:-4] + "AAAA"
    refused = browser.post(
        "/webauthn/recovery/verify", json={"token": token, "credential": bad}, headers=headers
    )
    assert refused.status_code == 400
    assert browser.get(link).status_code == 200
    assert len(rows(app, select(WebAuthnCredential))) == 1
    # No CSRF token: refused, nothing stored.
    no_csrf = browser.post("/webauthn/recovery/options", json={"token": token})
    assert no_csrf.status_code == 400
    # A ceremony begun as a login cannot complete a recovery.
    login_options = browser.post("/webauthn/login/options", json={}).get_json()
    login_options["user"] = options.get_json()["user"]
    login_options["rp"] = options.get_json()["rp"]
    login_options["pubKeyCredParams"] = options.get_json()["pubKeyCredParams"]
    forged = new_authenticator(app).register(login_options)
    mixed = browser.post(
        "/webauthn/recovery/verify", json={"token": token, "credential": forged}, headers=headers
    )
    assert mixed.status_code == 400 and mixed.get_json()["error"] == "challenge_invalid"
    assert len(rows(app, select(WebAuthnCredential))) == 1
    # Past its 15 minutes, the link is refused.
    with get_database(app).session_scope() as session:
        session.execute(
            update(ActionToken)
            .where(ActionToken.purpose == "passkey_recovery")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert browser.get(link).status_code == 410
    late = browser.post("/webauthn/recovery/options", json={"token": token}, headers=headers)
    assert late.status_code == 400 and late.get_json()["error"] == "recovery_link_invalid"


def test_a_locked_account_cannot_use_a_link_sent_before(
    app: Flask, smtp: SMTPServer, lost: SoftAuthenticator
) -> None:
    browser = app.test_client()
    ask_link(browser, username=USERNAME)
    link = path_of(link_in(wait_mail(smtp, EMAIL, RECOVERY_SUBJECT), "/recovery/"))
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username == USERNAME).values(locked_at=utcnow()))
    assert browser.get(link).status_code == 404


# --- Recovery codes ------------------------------------------------------------------------


def make_codes(app: Flask, smtp: SMTPServer, browser: FlaskClient, email: str = EMAIL) -> list[str]:
    """« Générer mes codes de récupération » on « Mes clés d'accès » (the login is recent)."""
    page = browser.get("/account/passkeys").get_data(as_text=True)
    assert "Générer mes codes de récupération" in page
    assert 'id="recovery-codes-offer"' in page
    made = browser.post("/account/recovery-codes", data={"csrf_token": csrf_of(page)})
    assert made.status_code == 200
    assert made.headers["Cache-Control"] == "no-store"
    codes = re.findall(r"<code>([A-Z0-9-]+)</code>", made.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    wait_mail(smtp, email, "codes de récupération")
    return codes


def use_code(client: FlaskClient, code: str, username: str = USERNAME):
    page = client.get("/recovery/code")
    return client.post(
        "/recovery/code",
        data={
            "csrf_token": csrf_of(page.get_data(as_text=True)),
            "username": username,
            "code": code,
        },
    )


def test_recovery_codes_are_shown_once_hashed_and_single_use(app: Flask, smtp: SMTPServer) -> None:
    add_user(app, USERNAME)
    browser = client_as(app, smtp, USERNAME, passkey=False)
    enrol_passkey(app, browser)
    codes = make_codes(app, smtp, browser)
    with get_database(app).session_scope() as session:
        stored = session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(stored) == 10
    assert all(code.replace("-", "").encode() not in h for code in codes for h in stored)
    page = browser.get("/account/passkeys").get_data(as_text=True)
    assert "Il vous reste 10 codes" in unescape(page) and codes[0] not in page

    stranger = app.test_client()
    accepted = use_code(stranger, codes[0].lower().replace("-", " "))
    assert accepted.status_code == 303
    link = accepted.headers["Location"]
    assert link.startswith("/recovery/")
    assert recover(app, stranger, link, new_authenticator(app)).status_code == 200
    wait_mail(smtp, EMAIL, ALERT_SUBJECT)
    # Spent: the same code again is refused; another one works.
    again = use_code(app.test_client(), codes[0])
    assert again.status_code == 400
    assert "Identifiant ou code de récupération incorrect." in unescape(
        again.get_data(as_text=True)
    )
    assert use_code(app.test_client(), codes[1]).status_code == 303


def test_wrong_codes_are_throttled_per_account_and_say_nothing(
    app: Flask, smtp: SMTPServer
) -> None:
    add_user(app, USERNAME)
    browser = client_as(app, smtp, USERNAME, passkey=False)
    enrol_passkey(app, browser)
    codes = make_codes(app, smtp, browser)
    unknown = use_code(app.test_client(), codes[0], username="personne")
    wrong = use_code(app.test_client(), "ABCD-EFGH-JKMN")
    assert unknown.status_code == wrong.status_code == 400
    for _ in range(4):
        use_code(app.test_client(), "ABCD-EFGH-JKMN")
    # The account's budget is spent: even a right code is refused for the hour.
    assert use_code(app.test_client(), codes[0]).status_code == 400


def test_regenerating_needs_a_recent_login_and_replaces_the_codes(
    app: Flask, smtp: SMTPServer
) -> None:
    add_user(app, USERNAME)
    browser = client_as(app, smtp, USERNAME, passkey=False)
    enrol_passkey(app, browser)
    first = make_codes(app, smtp, browser)
    with get_database(app).session_scope() as session:
        session.execute(update(AuthSession).values(authenticated_at=utcnow() - timedelta(hours=1)))
    page = browser.get("/account/passkeys").get_data(as_text=True)
    stale = browser.post("/account/recovery-codes", data={"csrf_token": csrf_of(page)})
    assert stale.status_code == 302 and "/account/reauth" in stale.headers["Location"]
    with get_database(app).session_scope() as session:
        session.execute(update(AuthSession).values(authenticated_at=utcnow()))
    smtp.clear()
    page = browser.get("/account/passkeys").get_data(as_text=True)
    second = browser.post("/account/recovery-codes", data={"csrf_token": csrf_of(page)})
    assert second.status_code == 200
    assert use_code(app.test_client(), first[0]).status_code == 400
