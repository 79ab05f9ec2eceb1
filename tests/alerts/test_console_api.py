"""The security JSON API: session or bearer token, filters, cursor pagination, errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, update

from authserver.alerts.console.filters import PARIS
from authserver.cli import cli
from authserver.db import get_database
from authserver.models import ApiToken, User, utcnow
from tests.alerts.console_helpers import add_alert, add_events, add_user, at, client_as

SIRET = "12345678900011"


def run_cli(app: Flask, *args: str):
    env = {
        "AUTHSERVER_DATABASE_URL": get_database(app).url,
        "AUTHSERVER_INSTANCE_PATH": app.instance_path,
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def create_token(app: Flask, username: str, name: str) -> str:
    result = run_cli(app, "security", "token", "create", "--username", username, "--name", name)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def people(app):
    return {
        "security": add_user(app, "equipe.securite", role="security"),
        "admin": add_user(app, "admin.portail", role="admin"),
        "employer": add_user(app, "patron.a", siret=SIRET),
    }


# --------------------------------------------------------------------------- authentication

ENDPOINTS = ["/api/security/events", "/api/security/alerts"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_without_credentials_401_in_the_contract_form(app, people, client, path):
    response = client.get(path)
    assert response.status_code == 401
    body = response.get_json()
    assert set(body) == {"error", "message"} and body["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_an_employer_session_gets_403(app, people, smtp, path):
    response = client_as(app, smtp, "patron.a").get(path)
    assert response.status_code == 403
    assert response.get_json()["error"] == "forbidden"


@pytest.mark.parametrize("username", ["equipe.securite", "admin.portail"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_console_session_is_enough(app, people, smtp, username, path):
    response = client_as(app, smtp, username).get(path)
    assert response.status_code == 200
    assert set(response.get_json()) == {"items", "next_cursor"}


def test_bearer_token_from_the_cli_then_revoked(app, people, client):
    add_alert(app, kind="not_me", severity="high", user_id=people["employer"])
    token = create_token(app, "equipe.securite", "siem")
    assert token.startswith("ats_")
    response = client.get("/api/security/alerts", headers=bearer(token))
    assert response.status_code == 200
    assert [item["kind"] for item in response.get_json()["items"]] == ["not_me"]
    with get_database(app).session_scope() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == "siem"))
        assert row.token_hash != token.encode() and len(row.token_hash) == 32
        assert row.last_used_at is not None
    result = run_cli(app, "security", "token", "revoke", "--name", "siem")
    assert result.exit_code == 0, result.output
    response = client.get("/api/security/alerts", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    # Revoking again says so.
    assert run_cli(app, "security", "token", "revoke", "--name", "siem").exit_code != 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ats_not-a-real-token",
        "Bearer ",
        "Basic ZXF1aXBlOnNlY3JldA==",
        "ats_x",
        "Bearer x" * 50,
    ],
)
def test_a_bad_authorization_header_is_401(app, people, client, header):
    response = client.get("/api/security/events", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"


def test_a_bad_bearer_wins_over_a_good_session(app, people, smtp):
    browser = client_as(app, smtp, "equipe.securite")
    response = browser.get("/api/security/events", headers=bearer("ats_forged"))
    assert response.status_code == 401


def test_tokens_only_for_console_accounts(app, people):
    result = run_cli(app, "security", "token", "create", "--username", "patron.a", "--name", "x")
    assert result.exit_code != 0
    assert "security ou admin" in result.output
    result = run_cli(app, "security", "token", "create", "--username", "nobody", "--name", "x")
    assert result.exit_code != 0
    create_token(app, "admin.portail", "dup")
    result = run_cli(
        app, "security", "token", "create", "--username", "admin.portail", "--name", "dup"
    )
    assert result.exit_code != 0 and "déjà" in result.output


def test_a_token_whose_account_lost_the_role_or_was_locked(app, people, client):
    token = create_token(app, "equipe.securite", "outil")
    with get_database(app).session_scope() as session:
        session.execute(update(User).where(User.id == people["security"]).values(role="employer"))
    assert client.get("/api/security/events", headers=bearer(token)).status_code == 403
    with get_database(app).session_scope() as session:
        session.execute(
            update(User)
            .where(User.id == people["security"])
            .values(role="security", locked_at=utcnow())
        )
    assert client.get("/api/security/events", headers=bearer(token)).status_code == 401


# --------------------------------------------------------------------------- filters and errors


@pytest.fixture
def token(app, people) -> dict[str, str]:
    return bearer(create_token(app, "equipe.securite", "tests"))


def test_event_items_and_filters(app, people, client, token):
    add_events(
        app,
        [
            {"user_id": people["employer"], "ip": "203.0.113.9", "created_at": at(0)},
            {
                "user_id": people["employer"],
                "ip": "203.0.113.9",
                "outcome": "failure",
                "reason": "bad_credentials",
                "method": "password",
                "created_at": at(1),
            },
            {
                "username_attempt": "inconnu",
                "ip": "198.51.100.1",
                "outcome": "failure",
                "created_at": at(2),
            },
            {
                "user_id": people["admin"],
                "ip": "198.51.100.1",
                "method": "passkey",
                "created_at": at(-3000),
            },
        ],
    )

    def items(**args):
        response = client.get("/api/security/events", query_string=args, headers=token)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["items"]

    first = items(account="patron.a")
    assert [i["outcome"] for i in first] == ["failure", "success"]
    assert first[0] | {"id": 0} == {
        "id": 0,
        "created_at": at(1).isoformat().replace("+00:00", "Z"),
        "account": "patron.a",
        "username_attempt": None,
        "siret": SIRET,
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0",
        "method": "password",
        "outcome": "failure",
        "reason": "bad_credentials",
        "device_id": None,
    }
    assert len(items(siret=SIRET)) == 2
    assert [i["username_attempt"] for i in items(ip="198.51.100.1", outcome="failure")] == [
        "inconnu"
    ]
    assert [i["account"] for i in items(method="passkey")] == ["admin.portail"]
    day = at(-3000).astimezone(PARIS).date().isoformat()
    assert [i["account"] for i in items(**{"from": day, "to": day})] == ["admin.portail"]
    since = at(0).isoformat()
    assert len(items(**{"from": since, "ip": "203.0.113.9"})) == 2
    assert items(account="personne") == []


def test_alert_items_and_filters(app, people, client, token):
    first = add_alert(
        app,
        kind="not_me",
        severity="high",
        user_id=people["employer"],
        ip="203.0.113.9",
        created_at=at(0),
    )
    add_alert(
        app,
        kind="failure_burst_ip",
        severity="high",
        ip="198.51.100.1",
        created_at=at(1),
        status="closed",
        details={"subject": "ip:198.51.100.1", "failures": 30},
    )

    def items(**args):
        response = client.get("/api/security/alerts", query_string=args, headers=token)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["items"]

    assert [i["kind"] for i in items()] == ["failure_burst_ip", "not_me"]
    (only,) = items(siret=SIRET)
    assert only == {
        "id": first,
        "created_at": at(0).isoformat().replace("+00:00", "Z"),
        "updated_at": None,
        "kind": "not_me",
        "severity": "high",
        "status": "open",
        "account": "patron.a",
        "siret": SIRET,
        "ip": "203.0.113.9",
        "details": {},
    }
    assert [i["id"] for i in items(account="patron.a")] == [first]
    assert [i["kind"] for i in items(status="closed")] == ["failure_burst_ip"]
    assert [i["kind"] for i in items(kind="not_me")] == ["not_me"]
    assert [i["details"]["failures"] for i in items(ip="198.51.100.1")] == [30]


@pytest.mark.parametrize(
    ("path", "args", "error"),
    [
        ("/api/security/events", {"from": "2026-02-30"}, "invalid_filter"),
        ("/api/security/events", {"to": "yesterday"}, "invalid_filter"),
        ("/api/security/events", {"from": "0001-01-01"}, "invalid_filter"),
        ("/api/security/events", {"to": "9999-12-31"}, "invalid_filter"),
        ("/api/security/events", {"from": "2026-05-02", "to": "2026-05-01"}, "invalid_filter"),
        ("/api/security/events", {"ip": "not an ip"}, "invalid_filter"),
        ("/api/security/events", {"siret": "1234"}, "invalid_filter"),
        ("/api/security/events", {"outcome": "maybe"}, "invalid_filter"),
        ("/api/security/events", {"method": "telepathy"}, "invalid_filter"),
        ("/api/security/alerts", {"kind": "bogus"}, "invalid_filter"),
        ("/api/security/alerts", {"status": "bogus"}, "invalid_filter"),
        ("/api/security/events", {"limit": "0"}, "invalid_limit"),
        ("/api/security/events", {"limit": "501"}, "invalid_limit"),
        ("/api/security/events", {"limit": "ten"}, "invalid_limit"),
        ("/api/security/events", {"limit": "-1"}, "invalid_limit"),
        ("/api/security/events", {"cursor": "garbage!"}, "invalid_cursor"),
        ("/api/security/events", {"cursor": "MTox"}, "invalid_cursor"),
        ("/api/security/events", {"cursor": "Mjo1OjY"}, "invalid_cursor"),
        ("/api/security/alerts", {"cursor": "MTo5OTk5OTk5OTk5OTk5OTk5OTk5OjE"}, "invalid_cursor"),
        ("/api/security/alerts", {"cursor": "x" * 65}, "invalid_cursor"),
        (
            "/api/security/alerts",
            {"cursor": "MTowOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk"},
            "invalid_cursor",
        ),
        ("/api/security/events", {"cursor": "MTowOi0x"}, "invalid_cursor"),
    ],
)
def test_bad_parameters_are_400_never_500(app, people, client, token, path, args, error):
    response = client.get(path, query_string=args, headers=token)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == error
    assert body["message"] and set(body) == {"error", "message"}


# --------------------------------------------------------------------------- pagination


def walk(client, path: str, headers, **args) -> list[dict]:
    seen: list[dict] = []
    cursor = None
    while True:
        query = dict(args)
        if cursor:
            query["cursor"] = cursor
        response = client.get(path, query_string=query, headers=headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert len(body["items"]) <= int(args.get("limit", 100))
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_pagination_over_1200_events_with_ties(backend_app):
    """Many rows share one created_at: the id breaks the tie; no duplicate, no gap."""
    app = backend_app
    add_user(app, "equipe.securite", role="security")
    token = bearer(create_token(app, "equipe.securite", "pages"))
    # 1,250 events over 25 distinct instants (50 rows each), inserted in shuffled time order.
    instants = [
        at(minutes)
        for minutes in (
            7,
            3,
            11,
            0,
            19,
            5,
            23,
            1,
            13,
            17,
            2,
            29,
            31,
            37,
            41,
            43,
            47,
            53,
            59,
            61,
            67,
            71,
            73,
            79,
            83,
        )
    ]
    add_events(
        app,
        [
            {"ip": "192.0.2.10", "created_at": moment, "user_agent": f"ua-{n}"}
            for n in range(50)
            for moment in instants
        ],
    )
    client = app.test_client()
    for limit in (100, 7, 500):
        items = walk(client, "/api/security/events", token, ip="192.0.2.10", limit=str(limit))
        ids = [item["id"] for item in items]
        assert len(ids) == len(set(ids)) == 1250
        keys = [(item["created_at"], item["id"]) for item in items]
        assert keys == sorted(keys, reverse=True)
    # Default page size.
    assert len(walk(client, "/api/security/events", token, ip="192.0.2.10")) == 1250


def test_pagination_is_stable_while_new_rows_arrive(app, people, client, token):
    add_events(app, [{"ip": "192.0.2.11", "created_at": at(0)} for _ in range(300)])
    first = client.get(
        "/api/security/events", query_string={"ip": "192.0.2.11", "limit": 100}, headers=token
    ).get_json()
    # Newer rows (and rows at the very same instant) arrive between two pages.
    add_events(app, [{"ip": "192.0.2.11", "created_at": at(m)} for m in (0, 0, 1, 2)])
    cursor = first["next_cursor"]
    seen = [item["id"] for item in first["items"]]
    while cursor:
        body = client.get(
            "/api/security/events",
            query_string={"ip": "192.0.2.11", "limit": 100, "cursor": cursor},
            headers=token,
        ).get_json()
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
    assert len(seen) == len(set(seen)) == 300


def test_alerts_pagination(app, people, client, token):
    for n in range(230):
        add_alert(app, kind="new_device", created_at=at(n % 4))
    items = walk(client, "/api/security/alerts", token, limit="50")
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == 230
    assert [(i["created_at"], i["id"]) for i in items] == sorted(
        ((i["created_at"], i["id"]) for i in items), reverse=True
    )
