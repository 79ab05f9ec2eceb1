"""Helpdesk actions (issue 14) over HTTP: who may do what, the effect, the append-only audit
row (who, when, why) and the e-mail to the account's owner, for each action."""

from __future__ import annotations

from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DatabaseError

from authserver.db import get_database
from authserver.models import AccountAction, AuthSession, User, WebAuthnCredential, utcnow
from tests.alerts.console_helpers import add_user, client_as
from tests.conftest import PASSWORD, Actions, csrf_of, link_in, path_of
from tests.establishments.test_flow import mails_to, wait_mail
from tests.services import SMTPServer, text_of
from tests.staff_login import enrol_passkey

EMPLOYER = "emma.employeur"
EMPLOYER_EMAIL = f"{EMPLOYER}@example.fr"
NOTICE = "Une action a été effectuée"


def account(app: Flask, username: str) -> User:
    with get_database(app).session_scope() as session:
        row = session.scalar(select(User).where(User.username == username))
        assert row is not None
        session.expunge(row)
        return row


def audit(app: Flask, username: str) -> list[AccountAction]:
    with get_database(app).session_scope() as session:
        rows = list(
            session.scalars(
                select(AccountAction)
                .where(AccountAction.username == username)
                .order_by(AccountAction.id)
            )
        )
        session.expunge_all()
        return rows


def live_sessions(app: Flask, username: str) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(AuthSession)
            .join(User, AuthSession.user_id == User.id)
            .where(User.username == username, AuthSession.revoked_at.is_(None))
        )


def passkeys_of(app: Flask, username: str) -> list[int]:
    with get_database(app).session_scope() as session:
        return list(
            session.scalars(
                select(WebAuthnCredential.id)
                .join(User, WebAuthnCredential.user_id == User.id)
                .where(User.username == username)
            )
        )


def act(
    staff: FlaskClient,
    app: Flask,
    username: str,
    action: str,
    reason: str = "Appel du 39 95",
    **extra: str,
):
    public_id = account(app, username).public_id
    page = staff.get(f"/helpdesk/accounts/{public_id}")
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    data = {"csrf_token": csrf_of(page.get_data(as_text=True)), "reason": reason, **extra}
    return staff.post(f"/helpdesk/accounts/{public_id}/actions/{action}", data=data)


@pytest.fixture
def security(app: Flask, smtp: SMTPServer) -> FlaskClient:
    add_user(app, "agent.securite", role="security")
    return client_as(app, smtp, "agent.securite")


@pytest.fixture
def counselor(app: Flask, smtp: SMTPServer) -> FlaskClient:
    add_user(app, "agent.conseil", role="counselor")
    return client_as(app, smtp, "agent.conseil")


def test_security_unlocks_a_locked_account_with_audit_and_email(
    app: Flask, smtp: SMTPServer, security: FlaskClient
) -> None:
    add_user(app, EMPLOYER, locked=True)
    employer = Actions(app.test_client(), smtp)
    refused = employer.login(EMPLOYER)
    assert refused.status_code != 302  # locked: no session

    response = act(security, app, EMPLOYER, "unlock", "Identité vérifiée au téléphone")
    assert response.status_code == 303
    assert account(app, EMPLOYER).locked_at is None
    (row,) = audit(app, EMPLOYER)
    assert (row.action, row.actor, row.reason) == (
        "unlock",
        "agent.securite",
        "Identité vérifiée au téléphone",
    )
    assert row.actor_id == account(app, "agent.securite").id
    mail = wait_mail(smtp, EMPLOYER_EMAIL, NOTICE)
    assert "déverrouillé" in text_of(mail)
    assert "Identité vérifiée" not in text_of(mail)  # the reason stays in the audit
    # The page shows the trail, and the employer gets in again.
    page = unescape(security.get(response.headers["Location"]).get_data(as_text=True))
    assert "Identité vérifiée au téléphone" in page
    assert employer.login(EMPLOYER).status_code == 302


def test_a_counsellor_cannot_unlock_and_nothing_changes(
    app: Flask, smtp: SMTPServer, counselor: FlaskClient
) -> None:
    add_user(app, EMPLOYER, locked=True)
    page = counselor.get(f"/helpdesk/accounts/{account(app, EMPLOYER).public_id}")
    assert 'id="action-unlock"' not in page.get_data(as_text=True)
    response = act(counselor, app, EMPLOYER, "unlock")
    assert response.status_code == 400
    assert "rôle ne permet pas" in unescape(response.get_data(as_text=True))
    assert account(app, EMPLOYER).locked_at is not None
    assert audit(app, EMPLOYER) == []


def test_a_reason_is_required(app: Flask, security: FlaskClient) -> None:
    add_user(app, EMPLOYER, locked=True)
    response = act(security, app, EMPLOYER, "unlock", reason="   ")
    assert response.status_code == 400
    assert "motif" in unescape(response.get_data(as_text=True)).lower()
    assert account(app, EMPLOYER).locked_at is not None
    assert audit(app, EMPLOYER) == []


def test_without_csrf_token_nothing_happens(app: Flask, security: FlaskClient) -> None:
    add_user(app, EMPLOYER, locked=True)
    public_id = account(app, EMPLOYER).public_id
    response = security.post(f"/helpdesk/accounts/{public_id}/actions/unlock", data={"reason": "x"})
    assert response.status_code == 400
    assert account(app, EMPLOYER).locked_at is not None


def test_employers_and_password_sessions_do_not_reach_the_helpdesk(
    app: Flask, smtp: SMTPServer
) -> None:
    add_user(app, EMPLOYER)
    employer = client_as(app, smtp, EMPLOYER, passkey=False)
    assert employer.get("/helpdesk").status_code == 403
    add_user(app, "agent.mdp", role="counselor")
    staff = client_as(app, smtp, "agent.mdp", passkey=False)
    page = staff.get("/helpdesk")
    assert "clé d'accès" in unescape(page.get_data(as_text=True))
    assert "Assistance aux comptes" not in page.get_data(as_text=True)
    anonymous = app.test_client().get("/helpdesk")
    assert anonymous.status_code == 302


def test_search_finds_by_identifiant_email_or_siret(app: Flask, security: FlaskClient) -> None:
    add_user(app, EMPLOYER, siret="12345678901234")
    for query in (EMPLOYER.upper(), EMPLOYER_EMAIL, "123 456 789 01234"):
        page = security.get("/helpdesk", query_string={"q": query}).get_data(as_text=True)
        assert f">{EMPLOYER}</a>" in page, query
    none = security.get("/helpdesk", query_string={"q": "personne"}).get_data(as_text=True)
    assert 'id="helpdesk-none"' in none


def test_remove_one_passkey_then_all(app: Flask, smtp: SMTPServer, counselor: FlaskClient) -> None:
    add_user(app, EMPLOYER)
    employer = client_as(app, smtp, EMPLOYER, passkey=False)
    enrol_passkey(app, employer)
    enrol_passkey(app, employer)
    first, second = passkeys_of(app, EMPLOYER)
    smtp.clear()

    response = act(
        counselor, app, EMPLOYER, "remove_passkey", "Téléphone perdu", passkey=str(first)
    )
    assert response.status_code == 303
    assert passkeys_of(app, EMPLOYER) == [second]
    assert live_sessions(app, EMPLOYER) == 0  # a passkey may have opened one
    assert "a été supprimée" in text_of(wait_mail(smtp, EMPLOYER_EMAIL, NOTICE))

    assert act(counselor, app, EMPLOYER, "remove_passkeys", "Tout perdu").status_code == 303
    assert passkeys_of(app, EMPLOYER) == []
    assert [row.action for row in audit(app, EMPLOYER)] == ["remove_passkey", "remove_passkeys"]
    # Another account's passkey id is refused.
    refused = act(counselor, app, EMPLOYER, "remove_passkey", passkey=str(second))
    assert refused.status_code == 400


def test_the_last_way_in_cannot_be_removed(
    app: Flask, smtp: SMTPServer, security: FlaskClient
) -> None:
    add_user(app, EMPLOYER)
    employer = client_as(app, smtp, EMPLOYER, passkey=False)
    enrol_passkey(app, employer)
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username == EMPLOYER).values(password_hash=None))
    response = act(security, app, EMPLOYER, "remove_passkeys")
    assert response.status_code == 400
    assert "aucun moyen de connexion" in unescape(response.get_data(as_text=True))
    assert len(passkeys_of(app, EMPLOYER)) == 1
    assert audit(app, EMPLOYER) == []


def test_forced_password_reset(app: Flask, smtp: SMTPServer, counselor: FlaskClient) -> None:
    add_user(app, EMPLOYER)
    employer = Actions(app.test_client(), smtp)
    assert employer.login(EMPLOYER).status_code == 302
    smtp.clear()

    assert act(counselor, app, EMPLOYER, "force_password_reset").status_code == 303
    assert live_sessions(app, EMPLOYER) == 0
    assert employer.client.get("/account/passkeys").status_code == 302
    mail = wait_mail(smtp, EMPLOYER_EMAIL, "Réinitialisation")
    assert "L'assistance France Travail a demandé" in text_of(mail)
    assert len(mails_to(smtp, EMPLOYER_EMAIL)) == 1  # the link is the notice
    # The old password no longer opens a session; the link sets a new one.
    assert employer.login(EMPLOYER).status_code != 302
    link = path_of(link_in(mail, "/password/reset/"))
    form = employer.client.get(link)
    new_password = PASSWORD + "-2"
    done = employer.client.post(
        link,
        data={
            "csrf_token": csrf_of(form.get_data(as_text=True)),
            "password": new_password,
            "password_confirm": new_password,
        },
    )
    assert done.status_code in (200, 302), done.get_data(as_text=True)[:300]
    assert employer.login(EMPLOYER, new_password).status_code == 302


def test_resend_activation_only_to_a_new_account(
    app: Flask, smtp: SMTPServer, counselor: FlaskClient
) -> None:
    employer = Actions(app.test_client(), smtp)
    assert employer.signup(EMPLOYER).status_code == 302
    smtp.wait_for(1)
    smtp.clear()
    assert act(counselor, app, EMPLOYER, "resend_activation").status_code == 303
    mail = wait_mail(smtp, f"{EMPLOYER}@entreprise.fr", "Activez")
    assert employer.client.get(path_of(link_in(mail, "/activate/"))).status_code == 200
    again = act(counselor, app, EMPLOYER, "resend_activation")
    assert again.status_code == 400
    assert "déjà activé" in unescape(again.get_data(as_text=True))


def test_revoke_sessions_and_lock(app: Flask, smtp: SMTPServer, security: FlaskClient) -> None:
    add_user(app, EMPLOYER)
    employer = client_as(app, smtp, EMPLOYER, passkey=False)
    assert employer.get("/account/passkeys").status_code == 200
    assert act(security, app, EMPLOYER, "revoke_sessions").status_code == 303
    assert employer.get("/account/passkeys").status_code == 302
    assert "sessions" in text_of(wait_mail(smtp, EMPLOYER_EMAIL, NOTICE))

    assert act(security, app, EMPLOYER, "lock").status_code == 303
    assert account(app, EMPLOYER).locked_at is not None
    assert act(security, app, EMPLOYER, "lock").status_code == 400  # already locked
    rows = audit(app, EMPLOYER)
    assert [row.action for row in rows] == ["revoke_sessions", "lock"]
    assert rows[0].detail == "1 session fermée"


def test_staff_cannot_lock_themselves_and_counsellors_not_staff(
    app: Flask, smtp: SMTPServer, security: FlaskClient, counselor: FlaskClient
) -> None:
    assert act(security, app, "agent.securite", "lock").status_code == 400
    assert act(counselor, app, "agent.securite", "revoke_sessions").status_code == 400
    assert account(app, "agent.securite").locked_at is None


def test_the_audit_is_append_only(app: Flask, security: FlaskClient) -> None:
    add_user(app, EMPLOYER, locked=True)
    assert act(security, app, EMPLOYER, "unlock").status_code == 303
    database = get_database(app)
    for statement in ("UPDATE account_actions SET reason = 'rien'", "DELETE FROM account_actions"):
        with pytest.raises(DatabaseError) as caught, database.session_scope() as session:
            session.execute(text(statement))
        assert "append-only" in str(caught.value)
    assert audit(app, EMPLOYER)[0].reason == "Appel du 39 95"


def test_counsellor_assisted_recovery_needs_a_certified_identity(
    app: Flask, smtp: SMTPServer, counselor: FlaskClient
) -> None:
    from tests.webauthn.test_recovery import new_authenticator, recover

    add_user(app, EMPLOYER)
    refused = act(counselor, app, EMPLOYER, "send_recovery_link", "Appel : téléphone perdu")
    assert refused.status_code == 400
    assert "pas certifié" in unescape(refused.get_data(as_text=True))
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.username == EMPLOYER).values(certified_at=utcnow()))
    sent = act(counselor, app, EMPLOYER, "send_recovery_link", "Identité vérifiée : CNI, SIRET")
    assert sent.status_code == 303
    mail = wait_mail(smtp, EMPLOYER_EMAIL, "nouvelle clé d'accès")
    assert "un conseiller France Travail vous envoie ce lien" in text_of(mail)
    (row,) = audit(app, EMPLOYER)
    assert row.action == "send_recovery_link" and row.detail.startswith("identité certifiée")
    browser = app.test_client()
    link = path_of(link_in(mail, "/recovery/"))
    assert recover(app, browser, link, new_authenticator(app)).status_code == 200
    wait_mail(smtp, EMPLOYER_EMAIL, "Nouvelle connexion")


def test_unlock_also_lifts_the_failed_password_suspension(
    app: Flask, smtp: SMTPServer, security: FlaskClient
) -> None:
    add_user(app, EMPLOYER)
    for _ in range(20):
        response = Actions(app.test_client(), smtp).login(EMPLOYER, "pas le bon mot de passe")
        if response.status_code == 429:
            break
    assert response.status_code == 429
    assert Actions(app.test_client(), smtp).login(EMPLOYER).status_code == 429
    done = act(security, app, EMPLOYER, "unlock", "Appel : l'employeur s'est trompé")
    assert done.status_code == 303
    assert audit(app, EMPLOYER)[0].detail == "compteur d'échecs de connexion remis à zéro"
    assert Actions(app.test_client(), smtp).login(EMPLOYER).status_code == 302
