"""Several users per establishment: the first certified member is its administrator; a later
user attaching the same SIRET waits for the administrator, who grants or refuses (e-mails
both ways), and can remove a collaborator, whose session loses the establishment at once."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from sqlalchemy import select

from authserver import db
from authserver.accounts import helpdesk
from authserver.alerts.console import actions as console_actions
from authserver.establishments import service
from authserver.models import Membership, SecurityEvent, User, utcnow
from tests.conftest import Actions, csrf_of
from tests.establishments.test_counselor import decide, request_id_of, waiting_employer
from tests.establishments.test_flow import (
    active_establishments,
    attach,
    choose_certification,
    employer,
    error_next_to,
    location,
    mails_to,
    membership_row,
    staff,
    submit_siret,
    unescape,
    user_row,
    wait_mail,
)
from tests.services import SMTPServer, text_of
from tests.staff_login import passkey_session

ADMIN = "alice.admin"
ADMIN_EMAIL = f"{ADMIN}@entreprise.fr"
NEWCOMER = "bruno.collab"
NEWCOMER_EMAIL = f"{NEWCOMER}@entreprise.fr"


@pytest.fixture
def siret() -> str:
    return active_establishments()[0].siret


@pytest.fixture
def admin(app: Flask, smtp: SMTPServer, siret: str) -> Actions:
    """The first user of the establishment, certified by a counsellor: its administrator."""
    actions = waiting_employer(app, smtp, ADMIN, siret)
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    assert decide(counselor, request_id_of(app, ADMIN), "certify").status_code == 302
    membership = membership_row(app, ADMIN)
    assert (membership.role, membership.status) == ("admin", "active")
    return actions


def decide_member(admin: Actions, username_membership_id: int, decision: str):
    return admin.client.post(
        f"/establishment/collaborators/{username_membership_id}/{decision}",
        data={"csrf_token": admin.csrf("/establishment/collaborators")},
    )


@pytest.fixture
def pending_newcomer(app: Flask, smtp: SMTPServer, admin: Actions, siret: str) -> Actions:
    """A second user attaching the same SIRET after the administrator exists."""
    actions = employer(app, smtp, NEWCOMER)
    response = attach(actions, siret)
    assert response.status_code == 302
    assert location(response) == "/establishment/pending"
    return actions


def test_first_user_is_active_before_any_admin_exists(
    app: Flask, smtp: SMTPServer, siret: str
) -> None:
    """Before anyone is certified there is no administrator: both users are active members."""
    first = employer(app, smtp, "first.user")
    second = employer(app, smtp, "second.user")
    attach(first, siret)
    attach(second, siret)
    for username in ("first.user", "second.user"):
        membership = membership_row(app, username)
        assert (membership.status, membership.role) == ("active", "member")
        assert user_row(app, username).siret == siret


def test_later_user_gets_a_pending_membership_and_the_admin_an_email(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions, siret: str
) -> None:
    membership = membership_row(app, NEWCOMER)
    assert (membership.status, membership.role) == ("pending", "member")
    assert membership.establishment.siret == siret
    assert user_row(app, NEWCOMER).siret is None

    mail = wait_mail(smtp, ADMIN_EMAIL, "demande")
    text = text_of(mail)
    assert "/establishment/collaborators" in text
    assert NEWCOMER in text and siret in text

    # The newcomer waits: the espace and the certification lead to the pending page.
    page = pending_newcomer.client.get("/establishment/pending")
    assert page.status_code == 200
    assert location(pending_newcomer.client.get("/espace")) == "/establishment/pending"
    assert location(pending_newcomer.client.get("/certification")) == "/establishment/pending"

    # The administrator sees the request on the collaborators page.
    listing = unescape(admin.client.get("/establishment/collaborators").get_data(as_text=True))
    assert NEWCOMER in listing and NEWCOMER_EMAIL in listing
    assert "Accorder l'accès" in listing


def test_admin_grants_access(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions, siret: str
) -> None:
    membership_id = membership_row(app, NEWCOMER).id
    response = decide_member(admin, membership_id, "grant")
    assert response.status_code == 302
    assert location(response) == "/establishment/collaborators"

    membership = membership_row(app, NEWCOMER)
    assert membership.status == "active" and membership.role == "member"
    assert membership.decided_at is not None
    assert membership.decided_by_id == user_row(app, ADMIN).id
    assert user_row(app, NEWCOMER).siret == siret
    wait_mail(smtp, NEWCOMER_EMAIL, "accordé")

    # The newcomer's espace now shows the establishment (same session, no re-login).
    espace = pending_newcomer.client.get("/espace")
    assert espace.status_code == 200
    assert siret in espace.get_data(as_text=True)

    # Deciding twice is refused.
    assert decide_member(admin, membership_id, "refuse").status_code == 409
    assert membership_row(app, NEWCOMER).status == "active"


def test_admin_refuses_and_the_user_can_attach_another_siret(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions
) -> None:
    membership_id = membership_row(app, NEWCOMER).id
    assert decide_member(admin, membership_id, "refuse").status_code == 302
    membership = membership_row(app, NEWCOMER)
    assert membership.status == "refused"
    assert membership.decided_by_id == user_row(app, ADMIN).id
    assert user_row(app, NEWCOMER).siret is None
    wait_mail(smtp, NEWCOMER_EMAIL, "refusée")

    # Back to the establishment page, with a word about the refusal.
    assert location(pending_newcomer.client.get("/espace")) == "/establishment"
    page = unescape(pending_newcomer.client.get("/establishment").get_data(as_text=True))
    assert "refusé" in page

    other = active_establishments()[2]
    assert other.siret != membership.establishment.siret
    response = attach(pending_newcomer, other.siret)
    assert response.status_code == 302
    membership = membership_row(app, NEWCOMER)
    assert membership.status == "active"
    assert membership.establishment.siret == other.siret
    assert user_row(app, NEWCOMER).siret == other.siret


def test_admin_removes_a_collaborator_whose_session_loses_the_establishment(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions, siret: str
) -> None:
    membership_id = membership_row(app, NEWCOMER).id
    decide_member(admin, membership_id, "grant")
    html = unescape(pending_newcomer.client.get("/espace").get_data(as_text=True))
    assert siret in html
    # The forward-auth claims of the collaborator's session carry the SIRET...
    verdict = pending_newcomer.client.get("/auth/verify")
    assert verdict.status_code == 200
    assert verdict.headers["X-Auth-Siret"] == siret

    response = decide_member(admin, membership_id, "remove")
    assert response.status_code == 302
    membership = membership_row(app, NEWCOMER)
    assert membership.status == "removed"
    assert membership.decided_by_id == user_row(app, ADMIN).id
    assert membership.decided_at is not None and membership.decided_at <= utcnow()
    assert user_row(app, NEWCOMER).siret is None

    # ...and lose it at once, in the same still-open session (portal services see no SIRET).
    verdict = pending_newcomer.client.get("/auth/verify")
    assert verdict.status_code == 200
    assert verdict.headers["X-Auth-User"] == NEWCOMER
    assert verdict.headers["X-Auth-Siret"] == ""

    # At once, in the collaborator's still-open session: no espace of that establishment.
    response = pending_newcomer.client.get("/espace")
    assert response.status_code == 302
    assert location(response) == "/establishment"
    page = unescape(pending_newcomer.client.get("/establishment").get_data(as_text=True))
    assert "plus accès" in page

    # Removing again is refused; the admin cannot remove themself through the page.
    assert decide_member(admin, membership_id, "remove").status_code == 409
    own = membership_row(app, ADMIN).id
    assert decide_member(admin, own, "remove").status_code == 404
    assert membership_row(app, ADMIN).status == "active"


def test_non_admin_gets_403_on_collaborators(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions
) -> None:
    # Pending user, then an active non-admin member.
    assert pending_newcomer.client.get("/establishment/collaborators").status_code == 403
    membership_id = membership_row(app, NEWCOMER).id
    decide_member(admin, membership_id, "grant")
    assert pending_newcomer.client.get("/establishment/collaborators").status_code == 403
    own_admin = membership_row(app, ADMIN).id
    response = pending_newcomer.client.post(
        f"/establishment/collaborators/{own_admin}/remove",
        data={"csrf_token": pending_newcomer.csrf("/establishment")},
    )
    assert response.status_code == 403
    assert membership_row(app, ADMIN).status == "active"
    # A user with no establishment at all, too.
    loner = employer(app, smtp, "carla.seule")
    assert loner.client.get("/establishment/collaborators").status_code == 403
    # Anonymous: login.
    anonymous = app.test_client().get("/establishment/collaborators")
    assert anonymous.status_code == 302 and location(anonymous).startswith("/login")


def test_admin_of_another_establishment_cannot_decide(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions
) -> None:
    other_admin = waiting_employer(app, smtp, "diane.ailleurs", active_establishments()[2].siret)
    counselor = staff(app, smtp, "eric.conseil", "counselor")
    decide(counselor, request_id_of(app, "diane.ailleurs"), "certify")
    assert membership_row(app, "diane.ailleurs").role == "admin"
    membership_id = membership_row(app, NEWCOMER).id
    assert decide_member(other_admin, membership_id, "grant").status_code == 404
    assert membership_row(app, NEWCOMER).status == "pending"


# --- Attaching again, leaving, and who is administrator after the administrator goes ----------


def counselor_again(app: Flask, smtp: SMTPServer) -> Actions:
    """The counsellor created by the ``admin`` fixture, logged in on a new client."""
    actions = Actions(app.test_client(), smtp)
    assert actions.login("camille.conseil").status_code == 302
    passkey_session(app, actions.client)  # staff tools need a passkey session
    return actions


def certify_by_counselor(app: Flask, smtp: SMTPServer, user: Actions, username: str) -> None:
    assert choose_certification(user, "counselor").status_code == 302
    response = decide(counselor_again(app, smtp), request_id_of(app, username), "certify")
    assert response.status_code == 302
    assert user_row(app, username).certified_at is not None


def granted_newcomer(app: Flask, smtp: SMTPServer, admin: Actions, siret: str) -> Actions:
    actions = employer(app, smtp, NEWCOMER)
    attach(actions, siret)
    assert decide_member(admin, membership_row(app, NEWCOMER).id, "grant").status_code == 302
    assert membership_row(app, NEWCOMER).status == "active"
    return actions


def delete_own_account(actions: Actions):
    page = actions.client.get("/account/delete")
    assert page.status_code == 200, page.headers.get("Location")
    return actions.client.post(
        "/account/delete",
        data={"csrf_token": csrf_of(page.get_data(as_text=True)), "confirm": "oui"},
    )


def requests_mailed_to(smtp: SMTPServer, address: str) -> int:
    return len(mails_to(smtp, address, "demande l'accès"))


def test_admin_confirming_the_same_siret_again_stays_admin(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions, siret: str
) -> None:
    before = membership_row(app, ADMIN)
    wait_mail(smtp, ADMIN_EMAIL, "demande")
    mails_before = len(smtp.messages)
    response = attach(admin, siret)
    assert response.status_code == 302
    assert location(response) == "/espace"
    after = membership_row(app, ADMIN)
    assert (after.role, after.status, after.id) == ("admin", "active", before.id)
    assert after.created_at == before.created_at
    # The establishment still has its administrator, who can decide the waiting request.
    assert decide_member(admin, membership_row(app, NEWCOMER).id, "grant").status_code == 302
    assert membership_row(app, NEWCOMER).status == "active"
    # A pending user confirming the same SIRET again does not e-mail the administrator again.
    other = employer(app, smtp, "carla.attente")
    attach(other, siret)
    wait_mail(smtp, ADMIN_EMAIL, "demande")
    time.sleep(0.3)
    count = requests_mailed_to(smtp, ADMIN_EMAIL)
    attach(other, siret)
    time.sleep(0.5)
    assert requests_mailed_to(smtp, ADMIN_EMAIL) == count
    assert membership_row(app, "carla.attente").status == "pending"
    assert len(smtp.messages) >= mails_before


def test_attaching_another_siret_while_active_is_refused(
    app: Flask, admin: Actions, siret: str
) -> None:
    other = active_establishments()[2]
    response = submit_siret(admin, other.siret)
    assert response.status_code == 409
    error = unescape(error_next_to(response.get_data(as_text=True), "siret"))
    assert "déjà rattaché" in error and "Quitter l'établissement" in error
    membership = membership_row(app, ADMIN)
    assert (membership.role, membership.status) == ("admin", "active")
    assert membership.establishment.siret == siret
    # The page offers the explicit way out.
    page = unescape(admin.client.get("/establishment").get_data(as_text=True))
    assert "quittez d'abord celui-ci" in page


def test_service_refuses_another_establishment_while_active(
    app: Flask, admin: Actions, siret: str
) -> None:
    """Even past the page (a confirmation screen left open in another tab)."""
    other = active_establishments()[2]
    with app.test_request_context():
        session = db.session()
        try:
            user = session.scalar(select(User).where(User.username == ADMIN))
            with pytest.raises(service.AlreadyAttached):
                service.attach(user, other)
        finally:
            session.rollback()
    assert membership_row(app, ADMIN).establishment.siret == siret


def test_admin_leaves_and_the_oldest_certified_member_takes_over(
    app: Flask, smtp: SMTPServer, admin: Actions, siret: str
) -> None:
    first = granted_newcomer(app, smtp, admin, siret)
    certify_by_counselor(app, smtp, first, NEWCOMER)
    second = employer(app, smtp, "diane.second")
    attach(second, siret)
    decide_member(admin, membership_row(app, "diane.second").id, "grant")
    certify_by_counselor(app, smtp, second, "diane.second")
    waiting = employer(app, smtp, "eric.attente")
    attach(waiting, siret)

    page = admin.client.get("/establishment/leave")
    assert page.status_code == 200
    assert "administrateur" in unescape(page.get_data(as_text=True))
    response = admin.client.post(
        "/establishment/leave", data={"csrf_token": csrf_of(page.get_data(as_text=True))}
    )
    assert location(response) == "/establishment"
    gone = membership_row(app, ADMIN)
    assert (gone.status, gone.role) == ("removed", "member")
    assert user_row(app, ADMIN).siret is None
    assert (membership_row(app, NEWCOMER).role, membership_row(app, "diane.second").role) == (
        "admin",
        "member",
    )
    # The new administrator is told of the waiting request, and can decide it.
    mail = wait_mail(smtp, NEWCOMER_EMAIL, "demande")
    assert "eric.attente" in text_of(mail)
    assert decide_member(first, membership_row(app, "eric.attente").id, "grant").status_code == 302
    # Leaving and coming back is a new request to the new administrator.
    attach(admin, siret)
    assert membership_row(app, ADMIN).status == "pending"


def test_admin_deletes_account_and_a_certified_member_is_promoted(
    app: Flask, smtp: SMTPServer, admin: Actions, siret: str
) -> None:
    collaborator = granted_newcomer(app, smtp, admin, siret)
    certify_by_counselor(app, smtp, collaborator, NEWCOMER)
    assert delete_own_account(admin).status_code == 302
    assert user_row(app, ADMIN) is None
    assert membership_row(app, NEWCOMER).role == "admin"
    # A new attacher waits for the new administrator instead of going straight in.
    later = employer(app, smtp, "felix.nouveau")
    assert location(attach(later, siret)) == "/establishment/pending"
    assert membership_row(app, "felix.nouveau").status == "pending"
    wait_mail(smtp, NEWCOMER_EMAIL, "demande")
    assert collaborator.client.get("/establishment/collaborators").status_code == 200


def test_admin_deletes_account_with_no_certified_member_left(
    app: Flask, smtp: SMTPServer, admin: Actions, siret: str
) -> None:
    collaborator = granted_newcomer(app, smtp, admin, siret)  # not certified
    waiting = employer(app, smtp, "gina.attente")
    attach(waiting, siret)
    assert membership_row(app, "gina.attente").status == "pending"
    assert delete_own_account(admin).status_code == 302
    # Nobody to promote: no administrator; the waiting request is not left stranded.
    assert membership_row(app, NEWCOMER).role == "member"
    assert membership_row(app, "gina.attente").status == "active"
    assert user_row(app, "gina.attente").siret == siret
    # The next member to be certified becomes administrator.
    certify_by_counselor(app, smtp, collaborator, NEWCOMER)
    assert membership_row(app, NEWCOMER).role == "admin"
    assert membership_row(app, "gina.attente").role == "member"


def test_already_certified_user_attaching_an_establishment_without_admin_is_admin(
    app: Flask, smtp: SMTPServer, admin: Actions, siret: str
) -> None:
    collaborator = granted_newcomer(app, smtp, admin, siret)
    certify_by_counselor(app, smtp, collaborator, NEWCOMER)
    assert membership_row(app, NEWCOMER).role == "member"
    decide_member(admin, membership_row(app, NEWCOMER).id, "remove")
    other = active_establishments()[2].siret
    response = attach(collaborator, other)
    assert location(response) == "/espace"
    membership = membership_row(app, NEWCOMER)
    assert (membership.status, membership.role) == ("active", "admin")
    assert membership.establishment.siret == other
    # A later user of that establishment now waits for them.
    later = employer(app, smtp, "hugo.apres")
    assert location(attach(later, other)) == "/establishment/pending"
    wait_mail(smtp, NEWCOMER_EMAIL, "demande")


def test_service_removing_the_admin_hands_over(
    app: Flask, smtp: SMTPServer, admin: Actions, siret: str
) -> None:
    collaborator = granted_newcomer(app, smtp, admin, siret)
    certify_by_counselor(app, smtp, collaborator, NEWCOMER)
    with app.test_request_context():
        session = db.session()
        admin_membership = session.scalar(
            select(Membership)
            .join(User, Membership.user_id == User.id)
            .where(User.username == ADMIN)
        )
        service.remove_member(admin_membership.user, admin_membership)
        session.commit()
    assert membership_row(app, ADMIN).status == "removed"
    assert membership_row(app, NEWCOMER).role == "admin"


@pytest.mark.parametrize("route", ["helpdesk", "security_console"])
def test_locking_the_admin_hands_the_role_over(
    app: Flask, smtp: SMTPServer, admin: Actions, siret: str, route: str
) -> None:
    """Issue 14: a locked administrator could no longer decide the members' requests, so
    locking one hands the role over as leaving does, from either place that locks."""
    collaborator = granted_newcomer(app, smtp, admin, siret)
    certify_by_counselor(app, smtp, collaborator, NEWCOMER)
    with app.test_request_context():
        session = db.session()
        target = session.scalar(select(User).where(User.username == ADMIN))
        if route == "helpdesk":
            helpdesk.perform(
                session,
                target=target,
                actor=helpdesk.Actor(id=None, label="cli:test", role=helpdesk.OPERATOR),
                action="lock",
                reason="Fraude signalée",
            )
        else:
            alert = SecurityEvent(kind="not_me", severity="high", user_id=target.id)
            session.add(alert)
            session.flush()
            staff = User(
                username="agent.sec",
                username_key="agent.sec",
                email="agent.sec@example.fr",
                email_key="agent.sec@example.fr",
                role="security",
            )
            session.add(staff)
            session.flush()
            console_actions.perform(
                session, alert=alert, actor=staff, action="lock_account", note=""
            )
        session.commit()
    assert user_row(app, ADMIN).locked_at is not None
    assert membership_row(app, ADMIN).role == "member"
    assert membership_row(app, NEWCOMER).role == "admin"


def test_the_company_page_leads_the_administrator_to_the_collaborators(
    app: Flask, smtp: SMTPServer, admin: Actions, pending_newcomer: Actions, siret: str
) -> None:
    """« Mon entreprise » (issue 12: « Compléter les infos de mon entreprise » opened the
    personal page): the establishment's details and, for its administrator, the collaborators."""
    page = admin.client.get("/establishment/details")
    assert page.status_code == 200
    html = unescape(page.get_data(as_text=True))
    assert siret in html and "Administrateur" in html
    assert 'href="/establishment/collaborators"' in html
    # A request still waiting for the administrator: its own page.
    assert location(pending_newcomer.client.get("/establishment/details")) == (
        "/establishment/pending"
    )
    # No establishment yet: attach one first.
    newcomer = employer(app, smtp, "sans.etablissement")
    assert location(newcomer.client.get("/establishment/details")) == "/establishment"
