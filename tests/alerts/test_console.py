"""The security console's pages: access, filters, keyset pages, actions and audit trail, CSV."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from authserver.alerts.console.filters import PARIS
from authserver.db import get_database
from authserver.models import AuthSession, LoginEvent, SecurityAction, utcnow
from tests.alerts.alert_helpers import wait_delivered
from tests.alerts.console_helpers import (
    add_alert,
    add_events,
    add_user,
    alert_of,
    at,
    client_as,
    event_ids,
    parse_csv,
    trail_of,
    user_of,
)
from tests.conftest import Actions, csrf_of

SIRET_A = "12345678900011"
SIRET_B = "98765432100019"
ALERT_ROW = re.compile(r'data-alert-id="(\d+)"')
EVENT_ROW = re.compile(r'data-event-id="(\d+)"')


@dataclass
class World:
    app: Flask
    users: dict[str, int]
    alerts: dict[str, int]


@pytest.fixture
def world(app, smtp) -> World:
    users = {
        "security": add_user(app, "equipe.securite", role="security"),
        "admin": add_user(app, "admin.portail", role="admin"),
        "employer": add_user(app, "patron.a", siret=SIRET_A),
        "victim": add_user(app, "victime.b", siret=SIRET_B),
        "other": add_user(app, "autre.c"),
    }
    alerts = {
        "victim_new_device": add_alert(
            app, kind="new_device", user_id=users["victim"], ip="203.0.113.7", created_at=at(0)
        ),
        "victim_not_me": add_alert(
            app,
            kind="not_me",
            severity="high",
            user_id=users["victim"],
            ip="203.0.113.7",
            created_at=at(60 * 24),
        ),
        "employer_throttled": add_alert(
            app,
            kind="throttled",
            severity="medium",
            user_id=users["employer"],
            ip="198.51.100.4",
            created_at=at(60 * 24 * 2 - 30),
            status="escalated",
        ),
        "ip_burst": add_alert(
            app,
            kind="failure_burst_ip",
            severity="high",
            ip="198.51.100.4",
            created_at=at(-60 * 24 * 3),
            status="closed",
            details={"subject": "ip:198.51.100.4", "failures": 25},
        ),
        "other_cloned": add_alert(
            app,
            kind="passkey_cloned",
            severity="high",
            user_id=users["other"],
            ip="2001:db8::1",
            created_at=at(-60 * 24 * 10),
        ),
    }
    return World(app, users, alerts)


def day(moment) -> str:
    """The Paris calendar day of a moment, as the date fields send it."""
    return moment.astimezone(PARIS).strftime("%Y-%m-%d")


def logged_in(browser) -> bool:
    """For an employer: 403 on the console while logged in, the login page once not."""
    status = browser.get("/security").status_code
    assert status in (302, 403)
    return status == 403


def alert_ids(response) -> list[int]:
    return [int(x) for x in ALERT_ROW.findall(response.get_data(as_text=True))]


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# --------------------------------------------------------------------------- access

PAGES = [
    "/security",
    "/security/events",
    "/security/alerts/{alert}",
    "/security/export.csv",
    "/security/events/export.csv",
]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_people_get_the_login_page(world, client, path):
    response = client.get(path.format(alert=world.alerts["victim_not_me"]))
    assert response.status_code == 302
    assert urlsplit(response.location).path == "/login"


@pytest.mark.parametrize("path", PAGES)
def test_an_employer_gets_403(world, smtp, path):
    browser = client_as(world.app, smtp, "patron.a")
    response = browser.get(path.format(alert=world.alerts["victim_not_me"]))
    assert response.status_code == 403
    assert "Vous n'avez pas accès" in page_text(response)


def test_an_employer_cannot_act_on_an_alert(world, smtp):
    browser = client_as(world.app, smtp, "patron.a")
    alert = world.alerts["victim_not_me"]
    page = browser.get("/security/events")  # any page: for a CSRF token
    token = csrf_of(page.get_data(as_text=True))
    response = browser.post(
        f"/security/alerts/{alert}/actions/acknowledge", data={"csrf_token": token, "note": "x"}
    )
    assert response.status_code == 403
    assert trail_of(world.app, alert) == []
    assert alert_of(world.app, alert).status == "open"


@pytest.mark.parametrize("username", ["equipe.securite", "admin.portail"])
@pytest.mark.parametrize("path", PAGES)
def test_security_and_admin_accounts_get_in(world, smtp, username, path):
    browser = client_as(world.app, smtp, username)
    response = browser.get(path.format(alert=world.alerts["victim_not_me"]))
    assert response.status_code == 200


def test_a_locked_security_account_is_sent_to_login(world, smtp):
    browser = client_as(world.app, smtp, "equipe.securite")
    assert browser.get("/security").status_code == 200
    with get_database(world.app).session_scope() as session:
        session.execute(
            text("UPDATE users SET locked_at = :now WHERE id = :id"),
            {"now": utcnow().replace(tzinfo=None), "id": world.users["security"]},
        )
    response = browser.get("/security")
    assert response.status_code == 302
    assert urlsplit(response.location).path == "/login"


# --------------------------------------------------------------------------- alert filters


@pytest.fixture
def security(world, smtp):
    return client_as(world.app, smtp, "equipe.securite")


def test_alerts_newest_first_without_filters(world, security):
    response = security.get("/security")
    assert response.status_code == 200
    a = world.alerts
    assert alert_ids(response) == [
        a["employer_throttled"],
        a["victim_not_me"],
        a["victim_new_device"],
        a["ip_burst"],
        a["other_cloned"],
    ]
    page = page_text(response)
    for label in (
        "Identifiant",
        "Numéro de SIRET",
        "Adresse IP",
        "Date de début",
        "Date de fin",
        "Type d'alerte",
        "Statut",
    ):
        assert f">{label}</label>" in page
    assert "<caption>Alertes de sécurité" in page


ALERT_FILTERS = [
    ({"account": "victime.b"}, ["victim_not_me", "victim_new_device"]),
    ({"account": "VICTIME.B"}, ["victim_not_me", "victim_new_device"]),
    ({"account": "personne"}, []),
    ({"siret": SIRET_A}, ["employer_throttled"]),
    ({"siret": "987 654 321 00019"}, ["victim_not_me", "victim_new_device"]),
    ({"ip": "198.51.100.4"}, ["employer_throttled", "ip_burst"]),
    ({"ip": "2001:DB8::1"}, ["other_cloned"]),
    ({"kind": "not_me"}, ["victim_not_me"]),
    ({"kind": "failure_burst_ip"}, ["ip_burst"]),
    ({"status": "open"}, ["victim_not_me", "victim_new_device", "other_cloned"]),
    ({"status": "escalated"}, ["employer_throttled"]),
    ({"status": "closed"}, ["ip_burst"]),
    ({"from": day(at(60 * 24))}, ["employer_throttled", "victim_not_me"]),
    ({"to": day(at(-60 * 24 * 3))}, ["ip_burst", "other_cloned"]),
    (
        {
            "from": day(at(-60 * 24 * 3)),
            "to": day(at(0)),
        },
        ["victim_new_device", "ip_burst"],
    ),
    ({"account": "victime.b", "kind": "new_device"}, ["victim_new_device"]),
    ({"ip": "198.51.100.4", "status": "closed"}, ["ip_burst"]),
]


@pytest.mark.parametrize(("args", "expected"), ALERT_FILTERS)
def test_each_alert_filter(world, security, args, expected):
    response = security.get("/security", query_string=args)
    assert response.status_code == 200
    assert alert_ids(response) == [world.alerts[name] for name in expected]


BAD_FILTERS = [
    ({"siret": "123"}, "14 chiffres"),
    ({"from": "2026-13-01"}, "Date invalide"),
    ({"to": "hier"}, "Date invalide"),
    ({"from": "2026-05-02", "to": "2026-05-01"}, "postérieure"),
    ({"ip": "999.1.1.1"}, "adresse IP"),
    ({"kind": "bogus"}, "Type d'alerte inconnu"),
    ({"status": "bogus"}, "Statut inconnu"),
    ({"account": "x" * 65}, "trop long"),
    ({"before": "abc"}, "Cette page n'existe pas"),
    ({"before": "999999"}, "Cette page n'existe pas"),
    ({"before": "9" * 40}, "Cette page n'existe pas"),
    ({"before": "²"}, "Cette page n'existe pas"),
]


@pytest.mark.parametrize(("args", "message"), BAD_FILTERS)
def test_a_bad_alert_filter_is_shown_beside_its_field(world, security, args, message):
    response = security.get("/security", query_string=args)
    assert response.status_code == 400
    page = page_text(response)
    assert message in page
    assert alert_ids(response) == []
    # What was typed stays in the form.
    for name, value in args.items():
        if name in ("account", "siret", "ip", "from", "to"):
            assert f'name="{name}" value="{value}"' in page


def test_alert_pages_follow_the_keyset(world, security):
    extra = [add_alert(world.app, kind="new_device", created_at=at(5)) for _ in range(110)]
    seen: list[int] = []
    response = security.get("/security", query_string={"kind": "new_device"})
    pages = 0
    while True:
        pages += 1
        ids = alert_ids(response)
        seen.extend(ids)
        match = re.search(
            r'href="(/security\?[^"]*before=\d+[^"]*)"', response.get_data(as_text=True)
        )
        if not match:
            break
        next_url = html.unescape(match.group(1))
        assert "kind=new_device" in next_url
        response = security.get(next_url)
        assert response.status_code == 200
    assert pages == 3
    assert len(seen) == len(set(seen)) == 111
    assert set(seen) == {*extra, world.alerts["victim_new_device"]}
    # Same created_at for the 110: the id breaks the tie, newest first.
    assert seen[:110] == sorted(extra, reverse=True)


# --------------------------------------------------------------------------- event filters


@pytest.fixture
def events(world):
    u = world.users
    add_events(
        world.app,
        [
            {"user_id": u["victim"], "ip": "203.0.113.7", "created_at": at(1)},
            {
                "user_id": u["victim"],
                "ip": "203.0.113.7",
                "outcome": "failure",
                "reason": "bad_credentials",
                "created_at": at(2),
            },
            {
                "user_id": u["employer"],
                "ip": "198.51.100.4",
                "method": "passkey",
                "created_at": at(60 * 24),
            },
            {
                "user_id": u["employer"],
                "ip": "198.51.100.4",
                "outcome": "throttled",
                "reason": "throttled",
                "created_at": at(60 * 24 + 1),
            },
            {
                "username_attempt": '=HYPERLINK("http://evil")',
                "ip": "192.0.2.99",
                "outcome": "failure",
                "reason": "bad_credentials",
                "created_at": at(-60 * 24 * 5),
            },
        ],
    )
    return world


def event_rows(response) -> list[int]:
    return [int(x) for x in EVENT_ROW.findall(response.get_data(as_text=True))]


EVENT_FILTERS = [
    ({"account": "victime.b"}, [2, 1]),
    ({"siret": SIRET_A}, [4, 3]),
    ({"ip": "203.0.113.7"}, [2, 1]),
    ({"outcome": "failure", "to": day(at(60 * 24 * 3))}, [2, 5]),
    ({"outcome": "throttled"}, [4]),
    ({"method": "passkey", "ip": "198.51.100.4"}, [3]),
    ({"from": day(at(-60 * 24 * 6)), "to": day(at(-60 * 24 * 4))}, [5]),
    ({"account": "victime.b", "outcome": "success"}, [1]),
]


@pytest.mark.parametrize(("args", "expected"), EVENT_FILTERS)
def test_each_event_filter(events, security, args, expected):
    """Rows 1-5 of the fixture (the test logins of the console users come from 127.0.0.1)."""
    by_position = _fixture_event_ids(events.app)
    response = security.get("/security/events", query_string=args)
    assert response.status_code == 200
    assert event_rows(response) == [by_position[n] for n in expected]


def _fixture_event_ids(app) -> dict[int, int]:
    ids = sorted(event_ids(app, LoginEvent.ip != "127.0.0.1"))
    return {n: ids[n - 1] for n in range(1, len(ids) + 1)}


def test_events_page_has_labelled_filters_and_a_caption(events, security):
    page = page_text(security.get("/security/events"))
    for label in ("Identifiant", "Numéro de SIRET", "Adresse IP", "Résultat", "Méthode"):
        assert f">{label}</label>" in page
    assert "<caption>Événements de connexion" in page


def test_a_bad_event_filter_is_a_400_page(events, security):
    response = security.get("/security/events", query_string={"outcome": "bogus"})
    assert response.status_code == 400
    assert "Résultat inconnu" in page_text(response)


# --------------------------------------------------------------------------- alert page, actions


def act(browser, alert_id: int, action: str, note: str = "", token: str | None = None):
    page = browser.get(f"/security/alerts/{alert_id}")
    data = {"note": note}
    data["csrf_token"] = token if token is not None else csrf_of(page.get_data(as_text=True))
    return browser.post(f"/security/alerts/{alert_id}/actions/{action}", data=data)


def test_the_alert_page_shows_the_account_events_and_devices(events, security):
    alert = events.alerts["victim_not_me"]
    page = page_text(security.get(f"/security/alerts/{alert}"))
    assert "victime.b" in page and SIRET_B in page
    assert "<caption>Dernières connexions du compte" in page
    assert "<caption>Appareils connus du compte" in page
    assert "<caption>Historique des actions" in page
    assert len(EVENT_ROW.findall(page)) == 2
    for label in ("Prendre en compte", "Escalader", "Verrouiller le compte", "Clôturer"):
        assert label in page


@pytest.mark.parametrize(
    ("action", "status"),
    [("acknowledge", "acknowledged"), ("escalate", "escalated"), ("close", "closed")],
)
def test_status_actions_are_recorded(world, security, action, status):
    alert = world.alerts["victim_not_me"]
    before = utcnow()
    response = act(security, alert, action, note=f"Note pour {action}")
    assert response.status_code == 303
    assert alert_of(world.app, alert).status == status
    (record,) = trail_of(world.app, alert)
    assert record.action == action
    assert record.actor_id == world.users["security"]
    assert record.note == f"Note pour {action}"
    assert before <= record.created_at <= utcnow()
    page = page_text(security.get(f"/security/alerts/{alert}"))
    assert f"Note pour {action}" in page and "equipe.securite" in page


def test_a_note_is_recorded_without_changing_the_status(world, security):
    alert = world.alerts["victim_not_me"]
    assert act(security, alert, "note", "Appel au client : il confirme.").status_code == 303
    assert alert_of(world.app, alert).status == "open"
    assert [r.action for r in trail_of(world.app, alert)] == ["note"]


def test_an_empty_note_action_is_refused(world, security):
    alert = world.alerts["victim_not_me"]
    response = act(security, alert, "note", "   ")
    assert response.status_code == 400
    assert "Saisissez la note" in page_text(response)
    assert trail_of(world.app, alert) == []


def test_a_refused_note_keeps_what_was_typed(world, security):
    alert = world.alerts["victim_not_me"]
    typed = "Très longue note. " * 120
    response = act(security, alert, "note", typed)
    assert response.status_code == 400
    page = page_text(response)
    assert "2000 caractères" in page
    assert typed.strip() in page
    assert trail_of(world.app, alert) == []


def test_lock_account_ends_its_sessions_at_once(world, security, smtp):
    victim = client_as(world.app, smtp, "victime.b")
    assert logged_in(victim)
    alert = world.alerts["victim_not_me"]
    response = act(security, alert, "lock_account", "Compte compromis")
    assert response.status_code == 303
    assert user_of(world.app, world.users["victim"]).locked_at is not None
    assert not logged_in(victim)
    (record,) = trail_of(world.app, alert)
    assert (record.action, record.note) == ("lock_account", "Compte compromis")
    # Locked: a password login no longer opens a session.
    again = world.app.test_client()
    Actions(again, smtp).login("victime.b")
    assert not logged_in(again)
    # Locking twice is refused, and recorded only once.
    assert act(security, alert, "lock_account").status_code == 400
    assert len(trail_of(world.app, alert)) == 1


def test_revoke_sessions_logs_the_account_out_everywhere(world, security, smtp):
    first = client_as(world.app, smtp, "victime.b")
    second = client_as(world.app, smtp, "victime.b")
    assert logged_in(first) and logged_in(second)
    alert = world.alerts["victim_not_me"]
    response = act(security, alert, "revoke_sessions", "Par précaution")
    assert response.status_code == 303
    assert not logged_in(first)
    assert not logged_in(second)
    with get_database(world.app).session_scope() as session:
        reasons = set(
            session.scalars(
                select(AuthSession.revoked_reason).where(
                    AuthSession.user_id == world.users["victim"]
                )
            )
        )
    assert reasons == {"security_console"}
    assert user_of(world.app, world.users["victim"]).locked_at is None
    assert [r.action for r in trail_of(world.app, alert)] == ["revoke_sessions"]
    # The security user's own session is untouched.
    assert security.get("/security").status_code == 200


def test_actions_that_do_not_apply_are_refused_and_not_recorded(world, security):
    closed = world.alerts["ip_burst"]
    response = act(security, closed, "acknowledge", "trop tard")
    assert response.status_code == 400
    assert "statut actuel" in page_text(response)
    # An alert about an IP has no account to lock.
    assert act(security, closed, "lock_account").status_code == 400
    assert trail_of(world.app, closed) == []
    assert act(security, closed, "bogus").status_code == 404


def test_an_action_without_csrf_token_changes_nothing(world, security):
    alert = world.alerts["victim_not_me"]
    response = security.post(f"/security/alerts/{alert}/actions/close", data={"note": "sans jeton"})
    assert response.status_code == 400
    assert alert_of(world.app, alert).status == "open"
    assert trail_of(world.app, alert) == []


def test_unknown_alert_is_404(world, security):
    assert security.get("/security/alerts/999999").status_code == 404
    assert security.get("/security/alerts/" + "9" * 40).status_code == 404


# --------------------------------------------------------------------------- append-only trail


def test_the_audit_trail_cannot_be_edited(backend_app):
    app = backend_app
    actor = add_user(app, "equipe.audit", role="security")
    alert = add_alert(app, kind="not_me", severity="high")
    with get_database(app).session_scope() as session:
        session.add(SecurityAction(alert_id=alert, actor_id=actor, action="note", note="vu"))
    engine = get_database(app).engine
    for statement in (
        "UPDATE security_actions SET note = 'modifié'",
        "UPDATE security_actions SET actor_id = actor_id",
        "DELETE FROM security_actions",
    ):
        with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
            connection.execute(text(statement))
        assert "append-only" in str(caught.value)
    # Nor can its alert go away from under it.
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(text("DELETE FROM security_events"))
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT action, note FROM security_actions")).all()
    assert [tuple(r) for r in rows] == [("note", "vu")]


# --------------------------------------------------------------------------- CSV


def test_alerts_csv_export_of_the_filtered_view(world, security):
    response = security.get("/security/export.csv", query_string={"ip": "198.51.100.4"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and ".csv" in disposition
    rows = parse_csv(response.data)
    assert list(rows[0]) == [
        "Numéro",
        "Date (heure de Paris)",
        "Type",
        "Gravité",
        "Statut",
        "Identifiant",
        "SIRET",
        "Adresse IP",
        "Détails",
        "Dernière action",
    ]
    assert [int(r["Numéro"]) for r in rows] == [
        world.alerts["employer_throttled"],
        world.alerts["ip_burst"],
    ]
    throttled, burst = rows
    assert throttled["Type"] == "Compte bloqué après des échecs répétés"
    assert throttled["Statut"] == "Escaladée"
    assert throttled["Identifiant"] == "patron.a"
    assert throttled["SIRET"] == SIRET_A
    assert burst["Gravité"] == "Élevée"
    assert '"failures": 25' in burst["Détails"]
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", burst["Date (heure de Paris)"])


def test_events_csv_export_with_formula_cells_neutralised(events, security):
    response = security.get("/security/events/export.csv", query_string={"outcome": "failure"})
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    rows = parse_csv(response.data)
    assert [r["Résultat"] for r in rows] == ["Échec", "Échec"]
    assert rows[0]["Identifiant"] == "victime.b"
    assert rows[0]["SIRET"] == SIRET_B
    assert rows[1]["Identifiant saisi"] == '\'=HYPERLINK("http://evil")'
    assert set(rows[0]) >= {"Adresse IP", "Méthode", "Motif", "Navigateur (User-Agent)"}


def test_csv_export_streams_every_row_past_one_batch(world, security):
    add_events(world.app, [{"ip": "192.0.2.200", "created_at": at(3)} for _ in range(2500)])
    response = security.get("/security/events/export.csv", query_string={"ip": "192.0.2.200"})
    assert response.is_streamed
    rows = parse_csv(response.data)
    ids = [int(r["Numéro"]) for r in rows]
    assert len(ids) == len(set(ids)) == 2500
    assert ids == sorted(ids, reverse=True)


def test_csv_export_with_a_bad_filter_is_400(world, security):
    response = security.get("/security/export.csv", query_string={"from": "demain"})
    assert response.status_code == 400
    assert "Date invalide" in page_text(response)


def test_csv_exports_give_their_database_connection_back(world, security):
    """A streamed export reads with the session current while streaming, closed at its end."""
    pool = get_database(world.app).engine.pool
    # The mail worker may still be delivering the console user's « clé d'accès ajoutée »:
    # its connection is not the export's.
    wait_delivered(world.app)
    deadline = time.monotonic() + 5
    while pool.checkedout() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The hot paths' driver connections kept aside (rawsql.RawConnections: the password
    # throttle's, the passkey fast path's) stay checked out by design; none is the export's.
    kept = pool.checkedout()
    assert kept <= 2
    for path in ("/security/export.csv", "/security/events/export.csv") * 3:
        response = security.get(path)
        assert response.status_code == 200
        response.get_data()
        response.close()
        assert pool.checkedout() == kept
