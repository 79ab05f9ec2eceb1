"""Mon compte: personal data shown and edited, e-mail change (recent re-authentication,
confirmation link to the new address, notice to the old one), CGU version, JSON export,
account deletion (sessions and passkeys gone, login events kept for the security team).

Real database, real SMTP server, the test client as the browser.
"""

from __future__ import annotations

import html as html_module
import json
import re
import time
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from authserver.db import get_database
from authserver.models import (
    AuthSession,
    CertificationRequest,
    Device,
    LoginEvent,
    OutboxMail,
    SecurityAction,
    SecurityEvent,
    User,
    WebAuthnCredential,
    utcnow,
)
from tests.conftest import PASSWORD, Actions, csrf_of, link_in, path_of
from tests.services import SMTPServer, text_of

USERNAME = "martin.dupont"
OLD_EMAIL = "martin.dupont@entreprise.fr"
NEW_EMAIL = "m.dupont@nouvelle-entreprise.fr"


def page_text(response) -> str:
    return html_module.unescape(response.get_data(as_text=True))


def user_row(app: Flask, username: str = USERNAME) -> User | None:
    with get_database(app).session_scope() as session:
        return session.scalar(select(User).where(User.username == username))


def location(response) -> str:
    parts = urlsplit(response.headers["Location"])
    return parts.path + (f"?{parts.query}" if parts.query else "")


def error_of(html: str, field: str) -> str:
    match = re.search(rf'<p class="fr-error-text" id="{field}-error">(.*?)</p>', html, re.S)
    assert match, f"no error next to {field!r}"
    return html_module.unescape(match.group(1))


def age_authentication(app: Flask, username: str = USERNAME, minutes: int = 10) -> None:
    """Make every session's last proof of presence older than the 5 minutes allowed."""
    with get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username == username))
        session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(authenticated_at=utcnow() - timedelta(minutes=minutes))
        )


def reauthenticate(actions: Actions, redirect_response, password: str = PASSWORD):
    """Follow the redirect to /account/reauth, type `Mot de passe`, press `Confirmer`."""
    target = location(redirect_response)
    assert urlsplit(target).path == "/account/reauth", target
    page = actions.client.get(target)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Mot de passe" in html and "Confirmer" in html
    next_url = parse_qs(urlsplit(target).query)["next"][0]
    return actions.client.post(
        "/account/reauth",
        data={"csrf_token": csrf_of(html), "password": password, "next": next_url},
    )


def mails_to(smtp: SMTPServer, address: str, subject_part: str = "") -> list[EmailMessage]:
    return [
        m
        for m in list(smtp.messages)
        if address in str(m["To"]) and subject_part in str(m["Subject"])
    ]


def wait_mail_to(
    smtp: SMTPServer, address: str, subject_part: str = "", timeout: float = 10.0
) -> EmailMessage:
    """The latest e-mail to ``address`` whose subject contains ``subject_part``."""
    deadline = time.monotonic() + timeout
    while True:
        found = mails_to(smtp, address, subject_part)
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            got = [(str(m["To"]), str(m["Subject"])) for m in smtp.messages]
            raise AssertionError(f"no e-mail to {address}; got {got}")
        time.sleep(0.05)


@pytest.fixture
def logged_in(actions: Actions) -> Actions:
    actions.create_active_account(USERNAME)
    response = actions.login(USERNAME)
    assert response.status_code == 302
    return actions


# --- View and edit ----------------------------------------------------------------------------


def test_account_page_shows_the_personal_data_and_the_cgu_version(
    app: Flask, logged_in: Actions
) -> None:
    response = logged_in.client.get("/account")
    assert response.status_code == 200
    html = page_text(response)
    assert USERNAME in html
    assert 'id="civility-monsieur" name="civility" value="monsieur" checked' in html
    assert 'value="Dupont"' in html and 'value="Martin"' in html
    assert 'value="+33712345678"' in html
    assert OLD_EMAIL in html
    for label in ("Civilité", "Nom", "Prénom", "Téléphone"):
        assert f">{label}</" in html
    version = user_row(app).cgu_version
    assert version
    assert f"version {version}" in html


def test_anonymous_is_sent_to_login(client) -> None:
    for path in ("/account", "/account/email", "/account/export.json", "/account/delete"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert location(response).startswith("/login")


def test_edit_personal_data(app: Flask, logged_in: Actions) -> None:
    response = logged_in.client.post(
        "/account",
        data={
            "csrf_token": logged_in.csrf("/account"),
            "civility": "madame",
            "last_name": "  Durand-Lefèvre ",
            "first_name": "Marie   Anne",
            "phone": "06 11 22 33 44",
        },
    )
    assert response.status_code == 302
    assert location(response) == "/account"
    user = user_row(app)
    assert (user.civility, user.last_name, user.first_name, user.phone) == (
        "madame",
        "Durand-Lefèvre",
        "Marie Anne",
        "+33611223344",
    )
    html = page_text(logged_in.client.get("/account"))
    assert "enregistrées" in html
    assert 'value="Durand-Lefèvre"' in html


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("last_name", "", "Veuillez saisir votre nom."),
        ("first_name", "   ", "Veuillez saisir votre prénom."),
        ("last_name", "x" * 101, "ne doit pas dépasser 100 caractères"),
        ("phone", "", "Veuillez saisir un numéro de téléphone."),
        ("phone", "12ab", "Numéro de téléphone invalide"),
        ("civility", "docteur", "Veuillez choisir votre civilité."),
    ],
)
def test_invalid_personal_data_is_refused_in_french(
    app: Flask, logged_in: Actions, field: str, value: str, expected: str
) -> None:
    data = {
        "csrf_token": logged_in.csrf("/account"),
        "civility": "monsieur",
        "last_name": "Dupré",
        "first_name": "Jean",
        "phone": "07 98 76 54 32",
    }
    data[field] = value
    response = logged_in.client.post("/account", data=data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    if field == "civility":
        assert expected in html_module.unescape(html)
    else:
        assert expected in error_of(html, field)
        assert f'aria-describedby="{field}-error"' in html
    # Nothing is saved, and the other fields keep what was typed.
    user = user_row(app)
    assert (user.last_name, user.first_name, user.phone) == ("Dupont", "Martin", "+33712345678")
    if field != "first_name":
        assert 'value="Jean"' in html


def test_edit_without_csrf_is_refused(app: Flask, logged_in: Actions) -> None:
    response = logged_in.client.post(
        "/account",
        data={"civility": "madame", "last_name": "X", "first_name": "Y", "phone": "0611223344"},
    )
    assert response.status_code == 400
    assert user_row(app).last_name == "Dupont"


# --- E-mail change ----------------------------------------------------------------------------


def test_email_change_needs_recent_reauthentication_and_the_new_address_link(
    app: Flask, smtp: SMTPServer, logged_in: Actions
) -> None:
    age_authentication(app)

    # Too old a proof of presence: to the re-authentication page, nothing sent.
    response = logged_in.client.get("/account/email")
    assert response.status_code == 302
    assert urlsplit(location(response)).path == "/account/reauth"
    posted = logged_in.client.post(
        "/account/email", data={"csrf_token": logged_in.csrf("/account"), "email": NEW_EMAIL}
    )
    assert posted.status_code == 302
    assert urlsplit(location(posted)).path == "/account/reauth"

    # A wrong password does not count.
    wrong = reauthenticate(logged_in, response, password="pas le bon mot de passe")
    assert wrong.status_code == 401
    assert "Mot de passe incorrect." in page_text(wrong)
    assert logged_in.client.get("/account/email").status_code == 302

    # `Mot de passe` + `Confirmer`: back to the e-mail page.
    confirmed = reauthenticate(logged_in, response)
    assert confirmed.status_code == 302
    assert location(confirmed) == "/account/email"
    form = logged_in.client.get("/account/email")
    assert form.status_code == 200

    # An invalid address is refused next to the field.
    bad = logged_in.client.post(
        "/account/email",
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "email": "pas-une-adresse"},
    )
    assert bad.status_code == 400
    assert "Adresse e-mail invalide" in error_of(bad.get_data(as_text=True), "email")

    # Nothing was queued for sending by the refused attempts.
    assert _count(app, OutboxMail, OutboxMail.kind.like("email_change%")) == 0
    sent = logged_in.client.post(
        "/account/email",
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "email": NEW_EMAIL},
    )
    assert sent.status_code == 302

    confirm_mail = wait_mail_to(smtp, NEW_EMAIL)
    notice = wait_mail_to(smtp, OLD_EMAIL, "Changement d'adresse")
    assert notice is not confirm_mail
    link = link_in(confirm_mail, "/account/email/confirm/")
    assert NEW_EMAIL in text_of(notice)
    assert "/account/email/confirm/" not in text_of(notice)  # the old address cannot confirm

    # Nothing changes until the link is opened.
    assert user_row(app).email == OLD_EMAIL
    opened = logged_in.client.get(path_of(link))
    assert opened.status_code == 302
    user = user_row(app)
    assert user.email == NEW_EMAIL
    assert user.email_key == NEW_EMAIL.casefold()
    assert NEW_EMAIL in page_text(logged_in.client.get("/account"))

    # Single use.
    again = app.test_client().get(path_of(link))
    assert again.status_code == 410
    assert user_row(app).email == NEW_EMAIL


def test_email_change_link_works_without_a_session_and_only_the_latest(
    app: Flask, smtp: SMTPServer, logged_in: Actions
) -> None:
    """A fresh login is a recent authentication; a second request supersedes the first."""
    form = logged_in.client.get("/account/email")
    assert form.status_code == 200
    token = csrf_of(form.get_data(as_text=True))
    logged_in.client.post("/account/email", data={"csrf_token": token, "email": NEW_EMAIL})
    first = link_in(wait_mail_to(smtp, NEW_EMAIL), "/account/email/confirm/")
    other = "martin@autre-entreprise.fr"
    logged_in.client.post("/account/email", data={"csrf_token": token, "email": other})
    second = link_in(wait_mail_to(smtp, other), "/account/email/confirm/")

    anonymous = app.test_client()
    assert anonymous.get(path_of(first)).status_code == 410
    assert user_row(app).email == OLD_EMAIL
    assert anonymous.get(path_of(second)).status_code == 302
    assert user_row(app).email == other


# --- Export -----------------------------------------------------------------------------------


def test_export_contains_the_account_data_and_no_password_hash(
    app: Flask, logged_in: Actions
) -> None:
    response = logged_in.client.get("/account/export.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers.get("Content-Disposition", "")
    body = response.get_data(as_text=True)
    data = json.loads(body)
    account = data["compte"]
    assert account["identifiant"] == USERNAME
    assert account["email"] == OLD_EMAIL
    assert (account["nom"], account["prenom"], account["civilite"]) == (
        "Dupont",
        "Martin",
        "monsieur",
    )
    assert account["telephone"] == "+33712345678"
    assert account["cgu_version"] == user_row(app).cgu_version
    assert data["connexions"] and data["connexions"][0]["resultat"] == "success"
    assert data["sessions"]
    # No secret of any kind.
    password_hash = user_row(app).password_hash
    assert password_hash and password_hash not in body
    assert "$argon2" not in body and "$2b$" not in body
    assert "password_hash" not in body and "mot_de_passe" not in body
    assert "user_handle" not in body and "id_hash" not in body


# --- Deletion ---------------------------------------------------------------------------------


def _add_passkey(app: Flask, username: str = USERNAME) -> None:
    with get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username == username))
        session.add(
            WebAuthnCredential(
                credential_id=b"\x01" * 32,
                user_id=user_id,
                public_key=b"\x02" * 77,
                name="Clé de test",
            )
        )


def _count(app: Flask, model, *where) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_account_deletion_after_reauthentication(
    app: Flask, smtp: SMTPServer, logged_in: Actions
) -> None:
    # History: a failed attempt, a second browser still logged in, a passkey.
    failed = Actions(app.test_client(), smtp)
    assert failed.login(USERNAME, "mauvais mot de passe").status_code == 401
    other_browser = Actions(app.test_client(), smtp)
    assert other_browser.login(USERNAME).status_code == 302
    _add_passkey(app)
    user_id = user_row(app).id
    assert _count(app, AuthSession, AuthSession.user_id == user_id) == 2
    assert _count(app, WebAuthnCredential, WebAuthnCredential.user_id == user_id) == 1
    events_before = _count(app, LoginEvent, LoginEvent.user_id == user_id)
    assert events_before == 3

    age_authentication(app)
    response = logged_in.client.get("/account/delete")
    assert response.status_code == 302
    # Without re-authentication, a POST deletes nothing.
    refused = logged_in.client.post(
        "/account/delete", data={"csrf_token": logged_in.csrf("/account"), "confirm": "oui"}
    )
    assert urlsplit(location(refused)).path == "/account/reauth"
    assert user_row(app) is not None

    confirmed = reauthenticate(logged_in, response)
    assert location(confirmed) == "/account/delete"
    page = logged_in.client.get("/account/delete")
    assert page.status_code == 200
    token = csrf_of(page.get_data(as_text=True))
    # The box must be ticked.
    unticked = logged_in.client.post("/account/delete", data={"csrf_token": token})
    assert unticked.status_code == 400
    assert user_row(app) is not None
    # Said next to the box, and in the error summary at the top (issue 12).
    said = "Cochez la case pour confirmer la suppression de votre compte."
    assert error_of(unticked.get_data(as_text=True), "confirm") == said
    assert f'<li><a href="#confirm">{said}</a></li>' in page_text(unticked)

    deleted = logged_in.client.post("/account/delete", data={"csrf_token": token, "confirm": "oui"})
    assert deleted.status_code == 302
    assert location(deleted) == "/login"

    assert user_row(app) is None
    assert _count(app, AuthSession, AuthSession.user_id == user_id) == 0
    assert _count(app, WebAuthnCredential, WebAuthnCredential.user_id == user_id) == 0
    assert _count(app, Device, Device.user_id == user_id) == 0
    # Login events stay for the security team, detached from the account.
    assert _count(app, LoginEvent, LoginEvent.user_id == user_id) == 0
    with get_database(app).session_scope() as session:
        kept = list(session.scalars(select(LoginEvent).order_by(LoginEvent.id)))
    # ... and the re-authentication, recorded like a login (issue 11).
    assert len(kept) == events_before + 1
    assert all(event.user_id is None for event in kept)
    assert all(event.username_attempt == USERNAME for event in kept)
    assert sorted(event.outcome for event in kept) == ["failure", "success", "success", "success"]
    assert kept[-1].reason == "reauth"

    # Both browsers are logged out; the identifiant no longer logs in.
    for browser in (logged_in, other_browser):
        after = browser.client.get("/account")
        assert after.status_code == 302 and location(after).startswith("/login")
    assert Actions(app.test_client(), smtp).login(USERNAME).status_code == 401
    # The owner is told, at the address the account had.
    wait_mail_to(smtp, OLD_EMAIL, "supprimé")


# --- Deletion: staff accounts, and the certification audit -----------------------------------


def _staff_logged_in(app: Flask, smtp: SMTPServer, username: str, role: str) -> Actions:
    from tests.establishments.test_flow import create_staff

    create_staff(app, username, role)
    actions = Actions(app.test_client(), smtp)
    assert actions.login(username).status_code == 302
    return actions


def _security_action_by(app: Flask, username: str) -> None:
    with get_database(app).session_scope() as session:
        actor_id = session.scalar(select(User.id).where(User.username == username))
        alert = SecurityEvent(kind="not_me", severity="high", user_id=None, ip="203.0.113.7")
        session.add(alert)
        session.flush()
        session.add(SecurityAction(alert_id=alert.id, actor_id=actor_id, action="acknowledge"))


@pytest.mark.parametrize("role", ["security", "counselor", "admin"])
def test_staff_account_deletion_is_refused_in_french(
    app: Flask, smtp: SMTPServer, role: str
) -> None:
    agent = _staff_logged_in(app, smtp, f"agent.{role}", role)
    _security_action_by(app, f"agent.{role}")  # the append-only audit names them
    page = agent.client.get("/account/delete")
    assert page.status_code == 200
    html = page_text(page)
    assert "ne peut pas être supprimé" in html and "équipe sécurité" in html
    assert "Supprimer mon compte</button>" not in html
    response = agent.client.post(
        "/account/delete",
        data={"csrf_token": csrf_of(page.get_data(as_text=True)), "confirm": "oui"},
    )
    assert response.status_code == 409
    assert "ne peut pas être supprimé" in page_text(response)
    assert user_row(app, f"agent.{role}") is not None
    assert _count(app, SecurityAction) == 1


def test_deleted_employer_keeps_the_audit_of_who_certified_it(app: Flask, smtp: SMTPServer) -> None:
    from tests.establishments.test_counselor import decide, request_id_of, waiting_employer
    from tests.establishments.test_flow import active_establishments, staff

    siret = active_establishments()[0].siret
    employer = waiting_employer(app, smtp, USERNAME, siret)
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    request_id = request_id_of(app, USERNAME)
    assert decide(counselor, request_id, "certify").status_code == 302
    # A second, pending request (online check started later, never finished).
    with get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username == USERNAME))
        session.add(CertificationRequest(user_id=user_id, method="online", status="pending"))
    counselor_id = user_row(app, "camille.conseil").id

    page = employer.client.get("/account/delete")
    assert page.status_code == 200
    deleted = employer.client.post(
        "/account/delete",
        data={"csrf_token": csrf_of(page.get_data(as_text=True)), "confirm": "oui"},
    )
    assert deleted.status_code == 302
    assert user_row(app) is None
    with get_database(app).session_scope() as session:
        rows = {row.id: row for row in session.scalars(select(CertificationRequest))}
    assert len(rows) == 2
    certified = rows[request_id]
    assert certified.user_id is None
    assert (certified.status, certified.decided_by_id) == ("certified", counselor_id)
    assert (certified.account_username, certified.account_siret) == (USERNAME, siret)
    other = next(row for row in rows.values() if row.id != request_id)
    assert other.status == "abandoned" and other.user_id is None
    # The counsellor console still shows who was certified, and by whom.
    decided = page_text(counselor.client.get(f"/counselor/requests/{request_id}"))
    assert f"{USERNAME} (compte supprimé)" in decided
    decision = re.search(r'<dd id="request-decision">(.*?)</dd>', decided, re.S).group(1)
    assert "Camille Conseil (camille.conseil)" in decision


@pytest.mark.parametrize("same", [OLD_EMAIL, "Martin.Dupont@Entreprise.FR"])
def test_email_change_to_the_current_address_is_refused(
    app: Flask, logged_in: Actions, same: str
) -> None:
    form = logged_in.client.get("/account/email")
    assert form.status_code == 200
    response = logged_in.client.post(
        "/account/email", data={"csrf_token": csrf_of(form.get_data(as_text=True)), "email": same}
    )
    assert response.status_code == 400
    assert "déjà l'adresse e-mail de votre compte" in error_of(
        response.get_data(as_text=True), "email"
    )
    assert _count(app, OutboxMail, OutboxMail.kind.like("email_change%")) == 0
