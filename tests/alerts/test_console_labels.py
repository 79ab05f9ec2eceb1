"""The console speaks French (issue 12): every code the app stores is shown with a label.

Login event reasons (the new ``reauth_*`` and ``change_*`` ones included), alert details
(``devices_forgotten``, ``method``…), device ids named by browser and system. Codes stay codes
in the database, the JSON API and the CSV's « Code du motif » column.
"""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import insert

from authserver.accounts import password_attempt
from authserver.accounts.service import LoginOutcome
from authserver.accounts.views_password_change import CHANGE
from authserver.alerts.console import labels
from authserver.db import get_database
from authserver.models import Device, utcnow
from authserver.webauthn import errors
from authserver.webauthn.review import NEW_DEVICE
from tests.alerts.console_helpers import add_alert, add_events, add_user, client_as, parse_csv


def ceremony_codes() -> set[str]:
    found, todo = set(), [errors.CeremonyError]
    while todo:
        cls = todo.pop()
        found.add(cls.error)
        todo.extend(cls.__subclasses__())
    return found


# Every reason a login event can carry: password_attempt (its refusals, and LoginOutcome's
# for a right password on an account that cannot log in), the login page's invalid input,
# a success from a new device, a re-authentication's success, every passkey ceremony error.
PASSWORD_REASONS = {"throttled", *(o.value for o in LoginOutcome if o is not LoginOutcome.OK)}
REASONS = sorted(
    {
        *PASSWORD_REASONS,
        *(
            f"{context}_{reason}"
            for context in (password_attempt.REAUTH, CHANGE)
            for reason in PASSWORD_REASONS
        ),
        "invalid_input",
        NEW_DEVICE,
        password_attempt.REAUTH,
        *ceremony_codes(),
    }
)


@pytest.mark.parametrize("code", REASONS)
def test_every_login_event_reason_has_a_french_label(code):
    label = labels.reason_label(code)
    assert not label.startswith("Motif non répertorié"), code
    assert code not in label and "_" not in label


def test_reason_labels_read_naturally():
    assert labels.reason_label("") == "—"
    assert labels.reason_label(None) == "—"
    assert labels.reason_label("bad_credentials") == "Identifiant ou mot de passe incorrect"
    assert labels.reason_label("reauth_bad_credentials") == (
        "Confirmation d'identité : mot de passe incorrect"
    )
    assert labels.reason_label("change_bad_credentials") == (
        "Changement de mot de passe : mot de passe actuel incorrect"
    )
    assert labels.reason_label("reauth_throttled") == (
        "Confirmation d'identité : trop de tentatives (refusée sans vérifier le mot de passe)"
    )
    # A code added later and forgotten here is still shown, never hidden.
    assert labels.reason_label("brand_new") == "Motif non répertorié (brand_new)"


class FakeDevice:
    def __init__(self, id: int, browser: str, system: str) -> None:
        self.id, self.browser, self.system = id, browser, system


def test_alert_details_are_french_with_devices_named():
    shown = labels.details(
        {
            "device_id": 8,
            "devices_forgotten": [8, 9],
            "method": "password",
            "reason": "too_many_failures",
            "first_at": "2026-01-15T23:30:00+00:00",
            "subject": "account:12",
            "detail": "sign count 5 after 7 (concurrent login)",
            "sessions_revoked": 2,
            "usernames": ["a.b", "c.d"],
        },
        devices=[FakeDevice(8, "Chrome 131", "Windows 10")],
        methods={"password": "Mot de passe"},
    )
    by_key = {item.key: (item.label, item.text) for item in shown}
    assert by_key["device_id"] == ("Appareil", "Chrome 131 sur Windows 10 (appareil n° 8)")
    assert by_key["devices_forgotten"][1] == (
        "Chrome 131 sur Windows 10 (appareil n° 8), Appareil n° 9"
    )
    assert by_key["method"] == ("Méthode de connexion", "Mot de passe")
    assert by_key["reason"] == ("Motif", "Trop d'échecs de mot de passe")
    assert by_key["first_at"] == ("Début", "16/01/2026 à 00:30:00 (heure de Paris)")
    assert by_key["subject"] == ("Objet de l'alerte", "Compte n° 12")
    assert by_key["detail"][1] == (
        "Compteur de signature reçu : 5 (plus de 7 attendu), connexions simultanées"
    )
    assert by_key["sessions_revoked"] == ("Sessions fermées", "2")
    assert by_key["usernames"] == ("Identifiants", "a.b, c.d")
    for item in shown:
        assert "_" not in item.label, item


# --- The pages --------------------------------------------------------------------------------

RAW = ("reset_required", "account_unavailable", "reauth_bad_credentials", "change_bad_credentials")


@pytest.fixture
def console(app, smtp):
    add_user(app, "equipe.securite", role="security")
    victim = add_user(app, "victime.b")
    with get_database(app).session_scope() as session:
        device_id = session.execute(
            insert(Device).returning(Device.id),
            {
                "user_id": victim,
                "cookie_hash": b"\x01" * 32,
                "browser": "Firefox 131",
                "system": "Ubuntu",
                "first_seen_at": utcnow(),
                "last_seen_at": utcnow(),
                "last_ip": "203.0.113.7",
            },
        ).scalar_one()
    add_events(
        app,
        [
            {"user_id": victim, "outcome": "failure", "reason": code, "device_id": device_id}
            for code in RAW
        ]
        + [{"user_id": victim, "reason": "new_device", "device_id": device_id}],
    )
    alert = add_alert(
        app,
        kind="not_me",
        severity="high",
        user_id=victim,
        ip="203.0.113.7",
        details={
            "device_id": device_id,
            "method": "password",
            "devices_forgotten": [device_id],
            "sessions_revoked": 1,
        },
    )
    return client_as(app, smtp, "equipe.securite"), alert, device_id


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_the_events_page_shows_french_reasons_and_browsers(console):
    security, _, _ = console
    page = text_of(security.get("/security/events"))
    for code in RAW:
        assert f">{code}<" not in page
    assert "Nouveau mot de passe exigé avant toute connexion" in page
    assert "Compte indisponible (verrouillé ou pas encore activé)" in page
    assert "Confirmation d'identité : mot de passe incorrect" in page
    assert "Changement de mot de passe : mot de passe actuel incorrect" in page
    assert "Nouvel appareil : alerte envoyée au titulaire" in page
    assert "Firefox 131 sur Linux" in page  # the user agent, read
    # The table's scroll region is reachable by keyboard and named by its caption.
    assert re.search(
        r'class="fr-table__container" tabindex="0" role="region" '
        r'aria-label="Événements de connexion, les plus récents d\'abord"',
        page,
    )


def test_the_alert_page_names_devices_and_methods(console):
    security, alert, device_id = console
    page = text_of(security.get(f"/security/alerts/{alert}"))
    named = f"Firefox 131 sur Ubuntu (appareil n° {device_id})"
    assert f'<dd data-detail="device_id"><a href="#device-{device_id}">{named}</a></dd>' in page
    assert f'<dd data-detail="devices_forgotten"><a href="#device-{device_id}">{named}</a>' in page
    assert '<dd data-detail="method">Mot de passe</dd>' in page
    assert "devices_forgotten" not in page.replace('data-detail="devices_forgotten"', "")
    assert f'id="device-{device_id}"' in page


def test_the_events_csv_has_the_label_and_the_code(console):
    security, _, _ = console
    rows = parse_csv(security.get("/security/events/export.csv").data)
    reasons = {(row["Motif"], row["Code du motif"]) for row in rows if row["Code du motif"]}
    assert ("Nouveau mot de passe exigé avant toute connexion", "reset_required") in reasons


def test_a_bad_filter_is_summed_up_at_the_top(console):
    security, _, _ = console
    response = security.get("/security/events", query_string={"siret": "12", "ip": "x"})
    assert response.status_code == 400
    page = text_of(response)
    assert 'id="error-summary"' in page
    assert (
        '<li><a href="#filter-siret">Le numéro de SIRET doit comporter 14 chiffres.</a></li>'
        in page
    )
    assert "<li><a href=\"#filter-ip\">L'adresse IP n'est pas valide.</a></li>" in page
