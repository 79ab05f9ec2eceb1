"""What the fuzzer (tests/test_fuzz.py) found, one focused test per finding, each checking
the shared fix rather than the one request that showed it."""

from __future__ import annotations

import html
import logging
from datetime import datetime, timezone

import pytest

from authserver.alerts.console.cursor import Position, encode
from authserver.db import get_database
from authserver.models import SecurityEvent
from tests.conftest import PASSWORD
from tests.establishments.test_flow import staff
from tests.sessions.oidc_support import logged_in_actions, register

# ------------------------------------------------------------ query strings that are not UTF-8

# WSGI servers hand the query string over as sent, one latin-1 character per byte; werkzeug
# decodes it as strict UTF-8 whenever ``request.args`` (or ``values``, ``full_path``) is
# read: a raw 0xff in the URL was a 500 on every view reading a parameter.
NOT_UTF8 = "next=\xff&client_id=\xe9t\xe9&response_type=code&limit=\xed\xa0\x80"
READS_ARGS = [
    ("GET", "/login"),
    ("GET", "/oauth/authorize"),
    ("GET", "/oauth/logout"),
    ("HEAD", "/oauth/logout"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("POST", "/oauth/introspect"),
    ("GET", "/oauth/userinfo"),
    ("GET", "/passkeys/offer"),
    ("GET", "/certification/callback"),
]


@pytest.mark.parametrize(("method", "path"), READS_ARGS)
def test_a_query_string_that_is_not_utf8_is_no_server_error(app, caplog, method, path):
    client = app.test_client()
    response = client.open(path, method=method, environ_overrides={"QUERY_STRING": NOT_UTF8})
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert not [record for record in caplog.records if record.exc_info]


@pytest.mark.parametrize(("method", "path"), READS_ARGS)
def test_not_utf8_for_a_logged_in_browser_too(app, actions, method, path):
    logged_in_actions(actions)
    response = actions.client.open(
        path, method=method, environ_overrides={"QUERY_STRING": NOT_UTF8}
    )
    assert response.status_code < 500, response.get_data(as_text=True)[:300]


def test_a_raw_byte_reads_as_its_percent_escape(client):
    """The same value whether the client escaped the byte or not (werkzeug keeps an escape
    that is not UTF-8 as the text « %FF »)."""

    def next_field(query: str) -> str:
        page = client.get("/login", environ_overrides={"QUERY_STRING": query})
        assert page.status_code == 200
        text = html.unescape(page.get_data(as_text=True))
        start = text.index('name="next" value="') + len('name="next" value="')
        return text[start : text.index('"', start)]

    assert next_field("next=/account%FF") == next_field("next=/account\xff") == "/account%FF"
    # Raw UTF-8 (what browsers send for « é » typed in the address bar) is unchanged.
    assert (
        next_field("next=/account\xc3\xa9") == next_field("next=/account%C3%A9") == "/account\xe9"
    )


def test_a_raw_line_break_in_the_query_never_reaches_a_header(client):
    """An empty path is redirected to « / » with the query as sent: a raw CR LF in it made
    the Location header raise out of the app (no answer at all)."""
    response = client.get("", environ_overrides={"QUERY_STRING": "a=\r\nSet-Cookie: x=y"})
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/?a=%0D%0ASet-Cookie:%20x=y")
    assert "x" not in {cookie.split("=")[0] for cookie in response.headers.getlist("Set-Cookie")}


# ------------------------------------------------------------- multipart parts without a name

# werkzeug keeps a multipart part whose Content-Disposition has no name under the key None;
# Flask-WTF's CSRF check (every protected POST) then called None.endswith(): a 500.
NAMELESS = (
    b"--b\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n"
    b'--b\r\nContent-Disposition: form-data; filename="f.txt"\r\n\r\nfile\r\n'
)


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--b--\r\n"


def field(name: str, value: str) -> bytes:
    return f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


@pytest.mark.parametrize("path", ["/login", "/signup", "/password/forgot", "/logout"])
def test_a_nameless_multipart_part_is_ignored_not_a_500(client, caplog, path):
    response = client.post(
        path, data=multipart(NAMELESS), content_type="multipart/form-data; boundary=b"
    )
    assert response.status_code == 400  # no CSRF token: refused as usual
    assert "Le formulaire a expiré" in html.unescape(response.get_data(as_text=True))
    assert not [record for record in caplog.records if record.exc_info]


def test_the_named_fields_beside_a_nameless_part_are_read(app, actions):
    logged_in_actions(actions)  # martin.dupont, logged in
    actions.logout()
    body = multipart(
        NAMELESS,
        field("csrf_token", actions.csrf("/login")),
        field("username", "martin.dupont"),
        field("password", PASSWORD),
    )
    response = actions.client.post(
        "/login", data=body, content_type="multipart/form-data; boundary=b"
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


# ------------------------------------------------------------------- Host values werkzeug refuses

# The Host check looked at the name only; werkzeug reads a Host with an empty or invalid port
# as no host at all (request.host == ""): absolute URLs were built as "http:///…" and
# Authlib refused them with an exception (a 500 on every OAuth endpoint). A name with an
# empty label cannot be routed (IDNA): the 400 page was rendered without its layout.
MALFORMED_HOSTS = ["localhost:", "localhost:abc", "localhost:0", "localhost:99999", "localhost.."]


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_a_host_header_werkzeug_cannot_read_is_refused(client, caplog, host):
    for method, path in [
        ("GET", "/login"),
        ("POST", "/oauth/token"),
        ("GET", "/auth/verify"),
        ("GET", "/healthz"),
    ]:
        response = client.open(path, method=method, headers={"Host": host})
        assert response.status_code == 400, (path, host)
        if path.startswith(("/oauth/", "/auth/")):
            assert response.get_json()["error"] == "invalid_host"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_readable_host_with_a_trailing_dot_is_still_served(client):
    assert client.get("/login", headers={"Host": "localhost.:5000"}).status_code == 200


# ------------------------------------------------------ Authlib errors raised outside its handling

# Authlib builds its request object (and checks the transport) before its own try blocks:
# an OAuth2Error raised there, e.g. insecure_transport for « http://localhost./ », escaped
# as a 500. Every such error is now the endpoint's JSON error.
OAUTH_ENDPOINTS = [
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("POST", "/oauth/introspect"),
    ("GET", "/oauth/userinfo"),
    ("POST", "/oauth/userinfo"),
]


@pytest.mark.parametrize(("method", "path"), OAUTH_ENDPOINTS)
def test_an_authlib_error_before_its_own_handling_is_a_json_error(app, caplog, method, path):
    kit = register(app, first_party=True)
    response = app.test_client().open(
        path,
        method=method,
        headers={"Host": "localhost.", **kit.basic},
        data={"grant_type": "refresh_token", "token": "x"},
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["error"] == "insecure_transport"
    assert body["message"] == "La requête est invalide."
    assert not [record for record in caplog.records if record.exc_info]


# ------------------------------------------------------------ ids past the id columns (console)

# The console's « before » parameter, its API cursors and its alert pages were bounded at
# 2**63 - 1, but the id columns are INTEGER: PostgreSQL refused 2**31 and more with « integer
# out of range » (a 500). The bound is now the columns' own, stated once (models.MAX_ID).
PAST_INT32 = [str(2**31), "73282932000074", str(2**63 - 1)]


@pytest.fixture
def admin(backend_app, smtp):
    with get_database(backend_app).session_scope() as session:
        session.add(SecurityEvent(kind="new_device", severity="low"))
    return staff(backend_app, smtp, "camille.admin", "admin")


@pytest.mark.parametrize("before", PAST_INT32)
def test_a_console_page_before_an_id_past_the_column_is_missing(admin, caplog, before):
    for path in ("/security", "/security/events"):
        response = admin.client.get(path, query_string={"before": before})
        assert response.status_code == 400, (path, response.status_code)
        assert "Cette page n'existe pas" in html.unescape(response.get_data(as_text=True))
    assert not [record for record in caplog.records if record.exc_info]


@pytest.mark.parametrize("before", PAST_INT32)
def test_an_api_cursor_past_the_column_is_invalid(admin, before):
    now = datetime.now(timezone.utc)
    cursor = encode(Position(created_at=now, id=int(before)))
    for path in ("/api/security/alerts", "/api/security/events"):
        response = admin.client.get(path, query_string={"cursor": cursor})
        assert response.status_code == 400, (path, response.status_code)
        assert response.get_json()["error"] == "invalid_cursor"


def test_the_largest_id_the_column_holds_is_still_looked_up(admin):
    assert admin.client.get(f"/security/alerts/{2**31 - 1}").status_code == 404
    response = admin.client.get("/security", query_string={"before": str(2**31 - 1)})
    assert response.status_code == 400  # no such alert: « Cette page n'existe pas »
