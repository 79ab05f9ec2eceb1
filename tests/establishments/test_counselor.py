"""The counsellor console: access control, the queue (oldest first, with its age), certify
and reject (each recorded: who, when, why), the e-mails, the espace unlocked."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from authserver.db import get_database
from authserver.models import CertificationRequest, User, utcnow
from tests.conftest import Actions
from tests.establishments.test_flow import (
    _decide_online,
    _start_online,
    active_establishments,
    attach,
    certification_rows,
    choose_certification,
    employer,
    location,
    mails_to,
    membership_row,
    staff,
    unescape,
    user_row,
    wait_mail,
)
from tests.services import SMTPServer, text_of


def waiting_employer(app: Flask, smtp: SMTPServer, username: str, siret: str) -> Actions:
    """An employer attached to ``siret`` who asked to be certified by a counsellor."""
    actions = employer(app, smtp, username)
    attach(actions, siret)
    response = choose_certification(actions, "counselor")
    assert response.status_code == 302
    return actions


def request_id_of(app: Flask, username: str) -> int:
    rows = [r for r in certification_rows(app, username) if r.status == "pending"]
    assert len(rows) == 1
    return rows[0].id


def decide(counselor: Actions, request_id: int, decision: str, reason: str = ""):
    page = f"/counselor/requests/{request_id}"
    return counselor.client.post(
        f"{page}/{decision}", data={"csrf_token": counselor.csrf(page), "reason": reason}
    )


def age_request(app: Flask, request_id: int, delta: timedelta) -> None:
    with get_database(app).session_scope() as session:
        session.execute(
            update(CertificationRequest)
            .where(CertificationRequest.id == request_id)
            .values(created_at=utcnow() - delta)
        )


# --- Access control ---------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client) -> None:
    for path in ("/counselor", "/counselor/requests/1"):
        response = client.get(path)
        assert response.status_code == 302
        assert location(response).startswith("/login")
    response = client.post("/counselor/requests/1/certify", data={})
    assert response.status_code in (302, 400)


def test_employer_gets_403(app: Flask, smtp: SMTPServer) -> None:
    waiting_employer(app, smtp, "julie.martin", active_establishments()[0].siret)
    request_id = request_id_of(app, "julie.martin")
    intruder = employer(app, smtp, "martin.dupont")
    assert intruder.client.get("/counselor").status_code == 403
    assert intruder.client.get(f"/counselor/requests/{request_id}").status_code == 403
    response = intruder.client.post(
        f"/counselor/requests/{request_id}/certify",
        data={"csrf_token": intruder.csrf("/establishment")},
    )
    assert response.status_code == 403
    assert user_row(app, "julie.martin").certified_at is None


def test_security_role_gets_403(app: Flask, smtp: SMTPServer) -> None:
    agent = staff(app, smtp, "agent.securite", "security")
    assert agent.client.get("/counselor").status_code == 403


@pytest.mark.parametrize("role", ["counselor", "admin"])
def test_counselor_and_admin_see_the_console(app: Flask, smtp: SMTPServer, role: str) -> None:
    agent = staff(app, smtp, f"agent.{role}", role)
    response = agent.client.get("/counselor")
    assert response.status_code == 200
    assert "Certifications à traiter" in unescape(response.get_data(as_text=True))


# --- The queue --------------------------------------------------------------------------------


def test_queue_lists_pending_requests_oldest_first_with_their_age(
    app: Flask, smtp: SMTPServer
) -> None:
    sirets = [found.siret for found in active_establishments()[:4]]
    waiting_employer(app, smtp, "recent.user", sirets[0])
    waiting_employer(app, smtp, "oldest.user", sirets[1])
    waiting_employer(app, smtp, "middle.user", sirets[2])
    # An online check in progress is not the counsellor's business.
    online = employer(app, smtp, "online.user")
    attach(online, sirets[3])
    assert choose_certification(online, "online").status_code == 302

    age_request(app, request_id_of(app, "oldest.user"), timedelta(days=2, hours=3, minutes=5))
    age_request(app, request_id_of(app, "middle.user"), timedelta(hours=5, minutes=10))

    counselor = staff(app, smtp, "camille.conseil", "counselor")
    html = unescape(counselor.client.get("/counselor").get_data(as_text=True))
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    names = [
        name
        for row in rows
        for name in ("oldest.user", "middle.user", "recent.user", "online.user")
        if name in row
    ]
    assert names == ["oldest.user", "middle.user", "recent.user"]
    oldest_row = next(row for row in rows if "oldest.user" in row)
    assert re.search(r"2 j 3 h (5|6) min", oldest_row), oldest_row
    middle_row = next(row for row in rows if "middle.user" in row)
    assert re.search(r"\b5 h (10|11) min", middle_row), middle_row
    assert sirets[1] in oldest_row  # the account's establishment


def test_request_page_shows_the_account_and_its_establishment(app: Flask, smtp: SMTPServer) -> None:
    found = active_establishments()[0]
    waiting_employer(app, smtp, "martin.dupont", found.siret)
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    page = counselor.client.get(f"/counselor/requests/{request_id_of(app, 'martin.dupont')}")
    assert page.status_code == 200
    html = unescape(page.get_data(as_text=True))
    for shown in (
        "martin.dupont",
        "Dupont",
        "Martin",
        "martin.dupont@entreprise.fr",
        found.name,
        found.siret,
        found.naf_code,
    ):
        assert shown in html


# --- Certify ----------------------------------------------------------------------------------


def test_certify_sends_the_mail_certifies_and_makes_the_first_member_admin(
    app: Flask, smtp: SMTPServer
) -> None:
    user = waiting_employer(app, smtp, "martin.dupont", active_establishments()[0].siret)
    before = unescape(user.client.get("/espace").get_data(as_text=True))
    assert "vous devez disposer d'un espace certifié" in before
    request_id = request_id_of(app, "martin.dupont")

    counselor = staff(app, smtp, "camille.conseil", "counselor")
    response = decide(counselor, request_id, "certify")
    assert response.status_code == 302
    assert location(response) == "/counselor"

    mail = wait_mail(smtp, "martin.dupont@entreprise.fr", "certifié")
    assert "/espace" in text_of(mail)
    assert user_row(app, "martin.dupont").certified_at is not None
    membership = membership_row(app, "martin.dupont")
    assert membership.role == "admin" and membership.status == "active"
    with get_database(app).session_scope() as session:
        row = session.get(CertificationRequest, request_id)
        counselor_id = session.scalar(select(User.id).where(User.username == "camille.conseil"))
        assert row.status == "certified"
        assert row.decided_by_id == counselor_id
        assert row.decided_at is not None

    # The user's espace is unlocked at once (same session), and the queue is empty.
    after = unescape(user.client.get("/espace").get_data(as_text=True))
    assert "vous devez disposer d'un espace certifié" not in after
    assert "Espace certifié" in after
    queue = unescape(counselor.client.get("/counselor").get_data(as_text=True))
    assert "Aucune demande en attente" in queue

    # A decided request cannot be decided again.
    again = decide(counselor, request_id, "reject", "Trop tard")
    assert again.status_code == 302
    assert certification_rows(app, "martin.dupont")[0].status == "certified"


def test_second_certified_member_does_not_become_admin(app: Flask, smtp: SMTPServer) -> None:
    siret = active_establishments()[0].siret
    waiting_employer(app, smtp, "premier.user", siret)
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    decide(counselor, request_id_of(app, "premier.user"), "certify")
    assert membership_row(app, "premier.user").role == "admin"
    # A second user of the same establishment waits for the admin, who grants access.
    second = employer(app, smtp, "second.user")
    attach(second, siret)
    admin = Actions(app.test_client(), smtp)
    admin.login("premier.user")
    membership_id = membership_row(app, "second.user").id
    admin.client.post(
        f"/establishment/collaborators/{membership_id}/grant",
        data={"csrf_token": admin.csrf("/establishment/collaborators")},
    )
    assert choose_certification(second, "counselor").status_code == 302
    decide(counselor, request_id_of(app, "second.user"), "certify")
    assert user_row(app, "second.user").certified_at is not None
    assert membership_row(app, "second.user").role == "member"
    assert membership_row(app, "premier.user").role == "admin"


# --- Reject -----------------------------------------------------------------------------------


def test_reject_requires_a_reason(app: Flask, smtp: SMTPServer) -> None:
    waiting_employer(app, smtp, "martin.dupont", active_establishments()[0].siret)
    request_id = request_id_of(app, "martin.dupont")
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    for blank in ("", "   "):
        response = decide(counselor, request_id, "reject", blank)
        assert response.status_code == 400
        html = unescape(response.get_data(as_text=True))
        assert 'id="reason-error"' in html and "motif" in html
    row = certification_rows(app, "martin.dupont")[0]
    assert row.status == "pending" and row.decided_by_id is None


def test_reject_with_a_reason_is_recorded_and_mailed(app: Flask, smtp: SMTPServer) -> None:
    waiting_employer(app, smtp, "martin.dupont", active_establishments()[0].siret)
    request_id = request_id_of(app, "martin.dupont")
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    reason = "Le numéro de téléphone ne répond pas et le SIRET ne correspond pas au nom."
    started = utcnow()
    response = decide(counselor, request_id, "reject", reason)
    assert response.status_code == 302

    with get_database(app).session_scope() as session:
        row = session.get(CertificationRequest, request_id)
        counselor_id = session.scalar(select(User.id).where(User.username == "camille.conseil"))
        assert row.status == "rejected"
        assert row.reason == reason
        assert row.decided_by_id == counselor_id
        assert started - timedelta(seconds=1) <= row.decided_at <= utcnow()
    mail = wait_mail(smtp, "martin.dupont@entreprise.fr", "certification")
    assert reason in " ".join(text_of(mail).split())
    assert user_row(app, "martin.dupont").certified_at is None
    assert mails_to(smtp, "martin.dupont@entreprise.fr", "certifié") == []
    # The decision shows on the request page (who decided is recorded, the reason shown).
    page = unescape(
        counselor.client.get(f"/counselor/requests/{request_id}").get_data(as_text=True)
    )
    assert reason in page
    # Still gated; the user can ask again.
    espace = unescape(
        waiting_user_client(app, smtp, "martin.dupont").get("/espace").get_data(as_text=True)
    )
    assert "vous devez disposer d'un espace certifié" in espace


def waiting_user_client(app: Flask, smtp: SMTPServer, username: str):
    actions = Actions(app.test_client(), smtp)
    actions.login(username)
    return actions.client


def test_unknown_request_is_404(app: Flask, smtp: SMTPServer) -> None:
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    assert counselor.client.get("/counselor/requests/999").status_code == 404
    assert decide(counselor, 999, "certify").status_code == 404


# --- Certified by another way: the other requests are closed -------------------------------


def test_online_certification_closes_the_earlier_counselor_request(
    app: Flask, smtp: SMTPServer
) -> None:
    user = waiting_employer(app, smtp, "martin.dupont", active_establishments()[0].siret)
    counselor_request = request_id_of(app, "martin.dupont")
    provider_page = _start_online(user)
    assert location(_decide_online(user, provider_page, "approved")) == "/espace"
    wait_mail(smtp, "martin.dupont@entreprise.fr", "certifié")

    rows = {row.id: row for row in certification_rows(app, "martin.dupont")}
    closed = rows[counselor_request]
    assert closed.status == "abandoned" and closed.decided_at is not None
    assert "certifié" in closed.reason
    assert [r.status for r in rows.values() if r.id != counselor_request] == ["certified"]

    counselor = staff(app, smtp, "camille.conseil", "counselor")
    queue = unescape(counselor.client.get("/counselor").get_data(as_text=True))
    assert "Aucune demande en attente" in queue
    # Certifying the closed request again is refused: no second e-mail.
    response = decide(counselor, counselor_request, "certify")
    assert response.status_code == 302
    assert location(response) == f"/counselor/requests/{counselor_request}"
    time.sleep(0.5)
    assert len(mails_to(smtp, "martin.dupont@entreprise.fr", "certifié")) == 1


def test_queue_hides_certified_users_and_their_request_cannot_be_certified_again(
    app: Flask, smtp: SMTPServer
) -> None:
    waiting_employer(app, smtp, "martin.dupont", active_establishments()[0].siret)
    request_id = request_id_of(app, "martin.dupont")
    # An account certified by another path while its request was still pending (older data).
    with get_database(app).session_scope() as session:
        session.execute(
            update(User).where(User.username == "martin.dupont").values(certified_at=utcnow())
        )
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    queue = unescape(counselor.client.get("/counselor").get_data(as_text=True))
    assert "martin.dupont" not in queue.split("Demandes traitées")[0]
    response = decide(counselor, request_id, "certify")
    assert location(response) == f"/counselor/requests/{request_id}"
    assert certification_rows(app, "martin.dupont")[0].status == "abandoned"
    time.sleep(0.3)
    assert mails_to(smtp, "martin.dupont@entreprise.fr", "certifié") == []


def test_decided_requests_show_who_decided_and_when_and_are_listed(
    app: Flask, smtp: SMTPServer
) -> None:
    sirets = [found.siret for found in active_establishments()[:2]]
    waiting_employer(app, smtp, "certifie.user", sirets[0])
    waiting_employer(app, smtp, "refuse.user", sirets[1])
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    certified_id = request_id_of(app, "certifie.user")
    rejected_id = request_id_of(app, "refuse.user")
    decide(counselor, certified_id, "certify")
    decide(counselor, rejected_id, "reject", "Personne injoignable")

    page = unescape(counselor.client.get(f"/counselor/requests/{certified_id}").get_data(True))
    decision = re.search(r'<dd id="request-decision">(.*?)</dd>', page, re.S).group(1)
    assert "par Camille Conseil (camille.conseil)" in decision
    assert re.search(r"le \d{2}/\d{2}/\d{4}", decision), decision
    assert "Compte certifié" in page
    assert "Certifier le compte" not in page

    queue = unescape(counselor.client.get("/counselor").get_data(as_text=True))
    assert "Aucune demande en attente" in queue
    decided = re.findall(r'<tr class="decided-row">(.*?)</tr>', queue, re.S)
    assert len(decided) == 2
    assert "refuse.user" in decided[0] and "Certification refusée" in decided[0]
    assert "certifie.user" in decided[1] and "Compte certifié" in decided[1]
    assert all("Camille Conseil" in row for row in decided)
