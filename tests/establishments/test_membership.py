"""Several users per establishment: the first certified member is its administrator; a later
user attaching the same SIRET waits for the administrator, who grants or refuses (e-mails
both ways), and can remove a collaborator, whose session loses the establishment at once."""

from __future__ import annotations

import pytest
from flask import Flask

from authserver.models import utcnow
from tests.conftest import Actions
from tests.establishments.test_counselor import decide, request_id_of, waiting_employer
from tests.establishments.test_flow import (
    active_establishments,
    attach,
    employer,
    location,
    membership_row,
    staff,
    unescape,
    user_row,
    wait_mail,
)
from tests.services import SMTPServer, text_of

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

    response = decide_member(admin, membership_id, "remove")
    assert response.status_code == 302
    membership = membership_row(app, NEWCOMER)
    assert membership.status == "removed"
    assert membership.decided_by_id == user_row(app, ADMIN).id
    assert membership.decided_at is not None and membership.decided_at <= utcnow()
    assert user_row(app, NEWCOMER).siret is None

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
