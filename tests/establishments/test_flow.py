"""The first login over HTTP: attaching an establishment by SIRET (errors, unknown, closed,
directory down), the onboarding redirects, and the online certification's outcomes.

Real database (a fresh SQLite copy per test), real SMTP server, the embedded directory
(authserver/data/establishments.json) unless a test configures another one.

The helpers at the top are shared with test_counselor.py and test_membership.py.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from authserver.accounts import validation
from authserver.accounts.service import hashing
from authserver.db import get_database
from authserver.establishments.directory import Establishment as Found
from authserver.establishments.directory import make_directory
from authserver.establishments.siret import is_valid, luhn_valid
from authserver.models import CertificationRequest, Membership, User, utcnow
from tests.conftest import PASSWORD, Actions, csrf_of, link_in, path_of
from tests.services import SMTPServer, free_port
from tests.staff_login import passkey_session

UNKNOWN_SEED_MESSAGE = (
    "Vous n'avez pas encore de numéro Siret ou votre numéro Siret n'est pas reconnu ? "
    "Appelez un conseiller entreprise au 39 95"
)

# --- Shared helpers ------------------------------------------------------------------------


def _embedded() -> list[Found]:
    return make_directory("embedded", api_key=None, base_url=None).entries()  # type: ignore[attr-defined]


def active_establishments() -> list[Found]:
    return [found for found in _embedded() if found.active]


def closed_establishments() -> list[Found]:
    return [found for found in _embedded() if not found.active]


def spaced(siret: str) -> str:
    """« 692 792 518 00015 », as printed on a Kbis extract."""
    return f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"


def unknown_valid_siret() -> str:
    """A SIRET with a valid Luhn key that the embedded directory does not know."""
    known = {found.siret for found in _embedded()}
    for prefix in ("1234567890000", "4444444440000", "8080808080808"):
        for last in "0123456789":
            candidate = prefix + last
            if is_valid(candidate) and candidate not in known:
                return candidate
    raise AssertionError("no unknown valid SIRET found")


def with_bad_key(siret: str) -> str:
    """The same SIRET with its last digit changed so that the Luhn key fails."""
    for last in "0123456789":
        candidate = siret[:-1] + last
        if not luhn_valid(candidate) and not candidate.startswith("356000000"):
            return candidate
    raise AssertionError("unreachable")


def user_row(app: Flask, username: str) -> User | None:
    with get_database(app).session_scope() as session:
        return session.scalar(select(User).where(User.username == username))


def membership_row(app: Flask, username: str) -> Membership | None:
    with get_database(app).session_scope() as session:
        row = session.scalar(
            select(Membership)
            .join(User, Membership.user_id == User.id)
            .where(User.username == username)
        )
        if row is not None:
            _ = row.establishment.siret  # loaded (joined) before the session closes
        return row


def certification_rows(app: Flask, username: str) -> list[CertificationRequest]:
    with get_database(app).session_scope() as session:
        return list(
            session.scalars(
                select(CertificationRequest)
                .join(User, CertificationRequest.user_id == User.id)
                .where(User.username == username)
                .order_by(CertificationRequest.id)
            )
        )


def create_staff(app: Flask, username: str, role: str) -> None:
    """What ``authserver user create --role R --activated --password-stdin`` does."""
    now = utcnow()
    with app.app_context():
        password_hash = hashing().hash(PASSWORD)
    with get_database(app).session_scope() as session:
        session.add(
            User(
                username=username,
                username_key=validation.username_key(username),
                email=f"{username}@francetravail.example",
                email_key=validation.email_key(f"{username}@francetravail.example"),
                password_hash=password_hash,
                password_changed_at=now,
                role=role,
                first_name="Camille",
                last_name="Conseil",
                activated_at=now,
            )
        )


def location(response) -> str:
    """The redirect's target as a local path with its query."""
    parts = urlsplit(response.headers["Location"])
    return parts.path + (f"?{parts.query}" if parts.query else "")


def landing(response) -> str:
    """Where a login sends the browser, past the passkey offer (its ``next``)."""
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    parts = urlsplit(response.headers["Location"])
    if parts.path == "/passkeys/offer":
        return parse_qs(parts.query)["next"][0]
    return parts.path


def employer(app: Flask, smtp: SMTPServer, username: str) -> Actions:
    """A new employer, signed up, activated and logged in, on its own test client."""
    actions = Actions(app.test_client(), smtp)
    response = actions.signup(username)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    # Other mails may arrive meanwhile: pick this account's activation mail by recipient.
    activation = wait_mail(smtp, f"{username}@entreprise.fr")
    assert actions.client.get(path_of(link_in(activation, "/activate/"))).status_code == 200
    response = actions.login(username)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return actions


def staff(app: Flask, smtp: SMTPServer, username: str, role: str) -> Actions:
    """A staff member's browser on a passkey session (their tools need one, issue 11)."""
    create_staff(app, username, role)
    actions = Actions(app.test_client(), smtp)
    response = actions.login(username)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    passkey_session(app, actions.client)
    return actions


def submit_siret(actions: Actions, value: str):
    return actions.client.post(
        "/establishment", data={"csrf_token": actions.csrf("/establishment"), "siret": value}
    )


def attach(actions: Actions, siret: str):
    """`Suivant` with the SIRET, then `Valider` on the company details; returns the answer."""
    response = submit_siret(actions, siret)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert location(response) == "/establishment/confirm"
    page = actions.client.get("/establishment/confirm")
    assert page.status_code == 200
    return actions.client.post(
        "/establishment/confirm", data={"csrf_token": csrf_of(page.get_data(as_text=True))}
    )


def choose_certification(actions: Actions, method: str | None):
    data = {"csrf_token": actions.csrf("/establishment")}
    if method is not None:
        data["method"] = method
    return actions.client.post("/certification", data=data)


def mails_to(smtp: SMTPServer, address: str, subject_part: str = "") -> list[EmailMessage]:
    return [
        message
        for message in list(smtp.messages)
        if address in str(message["To"]) and subject_part in str(message["Subject"])
    ]


def wait_mail(
    smtp: SMTPServer, address: str, subject_part: str = "", timeout: float = 10.0
) -> EmailMessage:
    """The first e-mail received for ``address`` whose subject contains ``subject_part``."""
    deadline = time.monotonic() + timeout
    while True:
        found = mails_to(smtp, address, subject_part)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            got = [(str(m["To"]), str(m["Subject"])) for m in smtp.messages]
            raise AssertionError(f"no e-mail to {address} about {subject_part!r}; got {got}")
        time.sleep(0.05)


def error_next_to(html: str, field: str) -> str:
    """The text of the error paragraph of a field (``id="<field>-error"``)."""
    match = re.search(rf'<p class="fr-error-text" id="{field}-error">(.*?)</p>', html, re.S)
    assert match, f"no error next to {field!r}"
    return match.group(1)


def unescape(text: str) -> str:
    import html

    return html.unescape(text)


# --- SIRET errors ----------------------------------------------------------------------------


@pytest.fixture
def newcomer(app: Flask, smtp: SMTPServer) -> Actions:
    return employer(app, smtp, "martin.dupont")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "Veuillez saisir le numéro SIRET"),
        ("6927925180001A", "ne contient que des chiffres"),
        ("SIRET692792518", "ne contient que des chiffres"),
        ("6927925180001", "14 chiffres"),
        ("692792518000150", "14 chiffres"),
        ("692 792 518", "14 chiffres"),
        ("BAD_KEY", "n'est pas valide"),
    ],
)
def test_invalid_siret_is_refused_next_to_the_field(
    app: Flask, newcomer: Actions, value: str, expected: str
) -> None:
    if value == "BAD_KEY":
        value = spaced(with_bad_key(active_establishments()[0].siret))
    response = submit_siret(newcomer, value)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert expected in unescape(error_next_to(html, "siret"))
    # The field keeps what was typed, and nothing was attached.
    assert f'value="{value}"' in html
    assert 'aria-describedby="siret-hint siret-error"' in html
    assert membership_row(app, "martin.dupont") is None
    assert "/establishment/confirm" not in (response.headers.get("Location") or "")


def test_unknown_siret_shows_the_seed_message(app: Flask, newcomer: Actions) -> None:
    response = submit_siret(newcomer, unknown_valid_siret())
    assert response.status_code in (400, 404)
    error = unescape(error_next_to(response.get_data(as_text=True), "siret"))
    assert UNKNOWN_SEED_MESSAGE in error
    assert membership_row(app, "martin.dupont") is None


def test_closed_establishment_shows_the_seed_message(app: Flask, newcomer: Actions) -> None:
    closed = closed_establishments()
    assert closed, "the embedded directory should list a closed establishment"
    response = submit_siret(newcomer, spaced(closed[0].siret))
    assert response.status_code in (400, 404)
    html = response.get_data(as_text=True)
    assert UNKNOWN_SEED_MESSAGE in unescape(error_next_to(html, "siret"))
    assert closed[0].name not in html
    # The confirmation page cannot be reached with it either.
    assert newcomer.client.get("/establishment/confirm").status_code == 302
    assert membership_row(app, "martin.dupont") is None


class _SilentServer:
    """Accepts TCP connections and never answers (a directory that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[_SilentServer]:
    server = _SilentServer()
    try:
        yield server
    finally:
        server.close()


def _directory_down_page(make_app, smtp: SMTPServer, url: str, max_seconds: float) -> None:
    app = make_app(AUTHSERVER_DIRECTORY="recherche-entreprises", AUTHSERVER_DIRECTORY_URL=url)
    actions = employer(app, smtp, "martin.dupont")
    started = time.monotonic()
    response = submit_siret(actions, spaced(active_establishments()[0].siret))
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    error = unescape(error_next_to(response.get_data(as_text=True), "siret"))
    assert "momentanément indisponible" in error
    assert "Traceback" not in response.get_data(as_text=True)
    assert elapsed < max_seconds, f"the page took {elapsed:.1f} s"
    assert membership_row(app, "martin.dupont") is None


def test_directory_down_closed_port_answers_503_quickly(make_app, smtp: SMTPServer) -> None:
    _directory_down_page(make_app, smtp, f"http://127.0.0.1:{free_port()}", max_seconds=5)


def test_directory_hanging_answers_503_in_bounded_time(
    make_app, smtp: SMTPServer, silent_server: _SilentServer
) -> None:
    _directory_down_page(make_app, smtp, f"http://127.0.0.1:{silent_server.port}", max_seconds=12)


# --- Attach, confirm, back -------------------------------------------------------------------


def test_siret_with_spaces_confirm_page_back_and_validate(app: Flask, newcomer: Actions) -> None:
    found = active_establishments()[0]
    response = submit_siret(newcomer, spaced(found.siret))
    assert response.status_code == 302
    assert location(response) == "/establishment/confirm"
    page = newcomer.client.get("/establishment/confirm").get_data(as_text=True)
    text = unescape(page)
    for shown in (found.name, found.address, found.postal_code, found.city, found.naf_code):
        assert shown in text
    assert "Valider</button>" in page
    # `Retour` is a button: a GET form back to /establishment carrying the SIRET as typed.
    back_form = re.search(
        r'<form method="get" action="/establishment">(.*?)</form>', page, re.S
    ).group(1)
    assert f'<input type="hidden" name="siret" value="{spaced(found.siret)}">' in back_form
    assert re.search(r"<button[^>]*>Retour</button>", back_form)
    back = newcomer.client.get("/establishment", query_string={"siret": spaced(found.siret)})
    assert f'value="{spaced(found.siret)}"' in back.get_data(as_text=True)
    # Without the parameter (a browser's own back), the SIRET is still there to correct.
    back = newcomer.client.get("/establishment").get_data(as_text=True)
    assert f'value="{spaced(found.siret)}"' in back
    # Nothing is attached until `Valider`.
    assert membership_row(app, "martin.dupont") is None
    assert user_row(app, "martin.dupont").siret is None

    response = newcomer.client.post("/establishment/confirm", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 302
    assert location(response) == "/certification"
    membership = membership_row(app, "martin.dupont")
    assert membership is not None and membership.status == "active"
    assert membership.establishment.siret == found.siret
    assert membership.establishment.name == found.name
    assert user_row(app, "martin.dupont").siret == found.siret


def test_confirm_without_csrf_changes_nothing(app: Flask, newcomer: Actions) -> None:
    found = active_establishments()[0]
    assert submit_siret(newcomer, found.siret).status_code == 302
    response = newcomer.client.post("/establishment/confirm", data={})
    assert response.status_code == 400
    assert membership_row(app, "martin.dupont") is None


def test_certification_needs_a_choice(app: Flask, newcomer: Actions) -> None:
    attach(newcomer, active_establishments()[0].siret)
    response = choose_certification(newcomer, None)
    assert response.status_code == 400
    assert "Veuillez choisir" in unescape(response.get_data(as_text=True))
    assert certification_rows(app, "martin.dupont") == []


def test_counselor_choice_shows_the_24h_page_and_the_gated_espace(
    app: Flask, newcomer: Actions
) -> None:
    found = active_establishments()[0]
    attach(newcomer, found.siret)
    response = choose_certification(newcomer, "counselor")
    assert response.status_code == 302
    page = newcomer.client.get(location(response)).get_data(as_text=True)
    assert "sous 24 hrs" in page
    # The seed's pair of buttons, and its number.
    assert re.search(
        r'<a class="fr-btn[^"]*" href="/establishment/details">'
        r"Compléter les infos de mon entreprise</a>",
        page,
    )
    # Issue 12: it leads to the establishment's details, not to the personal page.
    details = unescape(newcomer.client.get("/establishment/details").get_data(as_text=True))
    assert "Mon entreprise" in details
    assert found.name in details and found.siret in details
    assert "Quitter l'établissement" in details
    assert re.search(r'<a class="fr-btn[^"]*" href="/espace">Continuer ma navigation</a>', page)
    assert "08 06 06 00 20" in page
    rows = certification_rows(app, "martin.dupont")
    assert [(r.method, r.status) for r in rows] == [("counselor", "pending")]

    espace = newcomer.client.get("/espace")
    assert espace.status_code == 200
    html = unescape(espace.get_data(as_text=True))
    assert found.siret in html and found.name in html
    for tab in ("Accueil", "Mes services de recrutement", "Mes services administratifs"):
        assert re.search(rf'role="tab"[^>]*>{tab}</button>', html), tab
    assert "vous devez disposer d'un espace certifié" in html
    assert "Espace certifié" not in html
    # The seed's wording, verbatim, for every service that needs a certified espace.
    gated = re.findall(r'<p class="fr-text--sm certification-needed">(.*?)</p>', html, re.S)
    assert len(gated) >= 5
    for message in gated:
        assert "vous devez disposer d'un espace certifié*" in message
        assert (
            "Vous allez être contacté par un conseiller France Travail dans les plus brefs "
            "délais. Accélérez la certification de votre compte en appelant le 08 06 06 00 20. "
            "Le service est ouvert du lundi au vendredi de 8h à 19h."
        ) in message
    assert any(
        message.startswith(
            "Pour récupérer les documents liés au contrat de sécurisation professionnelle"
        )
        for message in gated
    )
    assert "* La certification de l'espace entreprise par un conseiller France Travail" in html

    # Choosing again does not queue a second request.
    choose_certification(newcomer, "counselor")
    assert len(certification_rows(app, "martin.dupont")) == 1


# --- Onboarding redirects --------------------------------------------------------------------


def test_first_login_goes_offer_then_establishment(app: Flask, smtp: SMTPServer) -> None:
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account("martin.dupont")
    response = actions.login("martin.dupont")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/passkeys/offer"
    assert landing(response) == "/establishment"
    # `Peut-être plus tard` goes on to the establishment page.
    later = actions.client.post(
        "/passkeys/offer/later",
        data={"csrf_token": actions.csrf("/establishment"), "next": "/establishment"},
    )
    assert location(later) == "/establishment"
    page = actions.client.get("/establishment").get_data(as_text=True)
    assert "Numéro de SIRET" in page and "Suivant" in page
    # Without an establishment, the espace and the certification send back here.
    assert location(actions.client.get("/espace")) == "/establishment"
    assert location(actions.client.get("/certification")) == "/establishment"


def test_login_with_establishment_but_no_choice_goes_to_certification(
    app: Flask, smtp: SMTPServer
) -> None:
    first = employer(app, smtp, "martin.dupont")
    attach(first, active_establishments()[0].siret)
    again = Actions(app.test_client(), smtp)
    assert landing(again.login("martin.dupont")) == "/certification"
    # Once a choice is made, the next login lands on the espace.
    choose_certification(first, "counselor")
    third = Actions(app.test_client(), smtp)
    assert landing(third.login("martin.dupont")) == "/espace"


@pytest.mark.parametrize("role", ["security", "counselor", "admin"])
def test_staff_are_not_sent_to_the_onboarding(app: Flask, smtp: SMTPServer, role: str) -> None:
    create_staff(app, f"agent.{role}", role)
    actions = Actions(app.test_client(), smtp)
    target = landing(actions.login(f"agent.{role}"))
    assert target not in ("/establishment", "/certification")
    # Their espace is their tool (issue 12): never the employer's « pas certifié ».
    espace = actions.client.get("/espace")
    assert espace.status_code == 302 and location(espace) == target


# --- Online certification (the development provider) ---------------------------------------


def _start_online(actions: Actions) -> str:
    response = choose_certification(actions, "online")
    assert response.status_code == 302
    provider_page = location(response)
    assert provider_page.startswith("/dev/identity/")
    page = actions.client.get(provider_page).get_data(as_text=True)
    for label in ("Approuver", "Refuser"):
        assert label in page
    return provider_page


def _decide_online(actions: Actions, provider_page: str, outcome: str):
    response = actions.client.post(
        provider_page, data={"csrf_token": actions.csrf(provider_page), "outcome": outcome}
    )
    assert response.status_code == 302
    assert location(response).startswith("/certification/callback?")
    return actions.client.get(location(response))


def test_online_approved_certifies_and_makes_admin(
    app: Flask, smtp: SMTPServer, newcomer: Actions
) -> None:
    attach(newcomer, active_establishments()[0].siret)
    provider_page = _start_online(newcomer)
    callback = _decide_online(newcomer, provider_page, "approved")
    assert location(callback) == "/espace"
    assert user_row(app, "martin.dupont").certified_at is not None
    assert membership_row(app, "martin.dupont").role == "admin"
    html = unescape(newcomer.client.get("/espace").get_data(as_text=True))
    assert "Espace certifié" in html
    assert "vous devez disposer d'un espace certifié" not in html
    wait_mail(smtp, "martin.dupont@entreprise.fr", "certifié")
    # A second result for the same, already decided, check is refused.
    again = _decide_online(newcomer, provider_page, "refused")
    assert again.status_code == 400
    assert user_row(app, "martin.dupont").certified_at is not None


@pytest.mark.parametrize("outcome", ["refused", "abandoned"])
def test_online_refused_or_abandoned_falls_back_to_the_counselor_queue(
    app: Flask, smtp: SMTPServer, newcomer: Actions, outcome: str
) -> None:
    attach(newcomer, active_establishments()[0].siret)
    provider_page = _start_online(newcomer)
    callback = _decide_online(newcomer, provider_page, outcome)
    assert callback.status_code == 200
    assert "conseiller" in unescape(callback.get_data(as_text=True))
    assert user_row(app, "martin.dupont").certified_at is None
    rows = certification_rows(app, "martin.dupont")
    assert [(r.method, r.status) for r in rows] == [
        ("online", "abandoned"),
        ("counselor", "pending"),
    ]
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    queue = counselor.client.get("/counselor").get_data(as_text=True)
    assert "martin.dupont" in queue


def test_forged_callback_is_refused(app: Flask, newcomer: Actions) -> None:
    attach(newcomer, active_establishments()[0].siret)
    _start_online(newcomer)
    response = newcomer.client.get("/certification/callback?result=forged.token.value")
    assert response.status_code == 400
    assert user_row(app, "martin.dupont").certified_at is None


@pytest.mark.parametrize(
    "typed",
    [
        "6 9 2 7 9 2 5 1 8 0 0 0 1 5",  # 27 characters: the old maxlength of 20 cut it
        "692\u200b792\u200b518\u200b00015",  # zero-width spaces from a copy
        "  692   792   518   00015   ",
    ],
)
def test_pasted_siret_with_wide_or_invisible_spacing_is_accepted(
    app: Flask, newcomer: Actions, typed: str
) -> None:
    page = newcomer.client.get("/establishment").get_data(as_text=True)
    assert 'maxlength="40"' in page
    assert len(typed) <= 40
    response = submit_siret(newcomer, typed)
    assert response.status_code == 302
    assert location(response) == "/establishment/confirm"
    confirm = newcomer.client.get("/establishment/confirm").get_data(as_text=True)
    assert active_establishments()[0].name in unescape(confirm)


def test_too_long_siret_input_is_refused_not_cut(app: Flask, newcomer: Actions) -> None:
    response = submit_siret(newcomer, "692 792 518 00015" + " " * 24)  # 41 characters
    assert response.status_code == 400
    assert "14 chiffres" in unescape(error_next_to(response.get_data(as_text=True), "siret"))


# --- « Mon accompagnement »: the establishment's agency ------------------------------------


def agency_block(html: str) -> str:
    return unescape(re.search(r'<div id="agency-contact">(.*?)</div>', html, re.S).group(1))


def espace_of(app: Flask, smtp: SMTPServer, username: str, siret: str) -> str:
    actions = employer(app, smtp, username)
    attach(actions, siret)
    choose_certification(actions, "counselor")
    return actions.client.get("/espace").get_data(as_text=True)


def test_mon_accompagnement_shows_the_agency_of_the_establishment_departement(
    app: Flask, smtp: SMTPServer
) -> None:
    lyon = next(f for f in active_establishments() if f.postal_code.startswith("69"))
    block = agency_block(espace_of(app, smtp, "martin.dupont", lyon.siret))
    assert "France Travail Lyon Part-Dieu" in block
    assert "04 65 71 69 69" in block and "entreprise.lyon-part-dieu@" in block
    assert 'href="tel:0465716969"' in block


def test_mon_accompagnement_falls_back_to_the_global_contact(make_app, smtp: SMTPServer) -> None:
    app = make_app(
        AUTHSERVER_AGENCY_PHONE="01 23 45 67 89", AUTHSERVER_AGENCY_EMAIL="pro@agence.example"
    )
    valence = next(f for f in active_establishments() if f.postal_code.startswith("26"))
    block = agency_block(espace_of(app, smtp, "martin.dupont", valence.siret))
    assert "01 23 45 67 89" in block and "pro@agence.example" in block


def test_agency_table_from_configuration(make_app, smtp: SMTPServer, tmp_path) -> None:
    table = tmp_path / "agences.json"
    table.write_text(
        '{"departements": {"26": {"name": "Agence de Valence", "phone": "04 75 00 00 00",'
        ' "email": "valence@agence.example"}}}',
        encoding="utf-8",
    )
    app = make_app(AUTHSERVER_AGENCY_CONTACTS=str(table))
    valence = next(f for f in active_establishments() if f.postal_code.startswith("26"))
    block = agency_block(espace_of(app, smtp, "martin.dupont", valence.siret))
    assert "Agence de Valence" in block and "04 75 00 00 00" in block
