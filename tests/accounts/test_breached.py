"""Breached passwords (ASVS 6.2.12): Pwned Passwords' k-anonymity range API, here a local
stand-in speaking its protocol; the real service is the adapter's default URL."""

from __future__ import annotations

import hashlib
import html
import threading
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest

from authserver.accounts.breached import PwnedPasswords
from tests.conftest import Actions, csrf_of
from tests.establishments.local_http import close, serve, without_proxies

LEAKED = "le chat de la voisine 1987"
SAFE = "girafe mauve sous la pluie 42"


class RangeAPI(BaseHTTPRequestHandler):
    """``GET /range/<5 hex>``: the suffixes of leaked SHA-1 hashes with that prefix."""

    seen: ClassVar[list[str]] = []
    broken = False

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if type(self).broken:
            self.send_response(503)
            self.end_headers()
            return
        digest = hashlib.sha1(LEAKED.encode()).hexdigest().upper()
        lines = ["0" * 35 + ":0"]  # a padding decoy
        if self.path == f"/range/{digest[:5]}":
            lines.append(f"{digest[5:]}:1234")
        body = "\r\n".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def range_api(monkeypatch):
    without_proxies(monkeypatch)
    RangeAPI.seen, RangeAPI.broken = [], False
    stop = threading.Event()
    server = serve(RangeAPI)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    close(server, stop)


def test_only_five_hex_digits_leave_the_server(range_api):
    checker = PwnedPasswords(range_api)
    assert checker.times_seen(LEAKED) == 1234
    assert checker.times_seen(SAFE) == 0
    assert all(len(path) == len("/range/") + 5 for path in RangeAPI.seen)
    assert not any(LEAKED in path or SAFE in path for path in RangeAPI.seen)


def test_an_outage_lets_the_password_through(range_api, caplog):
    RangeAPI.broken = True
    assert PwnedPasswords(range_api).times_seen(LEAKED) is None
    assert PwnedPasswords("http://127.0.0.1:9").times_seen(LEAKED) is None
    assert all(LEAKED not in record.getMessage() for record in caplog.records)


def test_signup_refuses_a_leaked_password(make_app, smtp, range_api):
    app = make_app(
        AUTHSERVER_BREACHED_PASSWORDS="pwnedpasswords",
        AUTHSERVER_BREACHED_PASSWORDS_URL=range_api,
    )
    actions = Actions(app.test_client(), smtp)
    refused = actions.signup(password=LEAKED, password_confirm=LEAKED)
    assert refused.status_code == 400
    assert "fuites de données connues" in html.unescape(refused.get_data(as_text=True))
    assert actions.signup(password=SAFE, password_confirm=SAFE).status_code == 302


def test_the_change_form_refuses_a_leaked_password(make_app, smtp, range_api):
    app = make_app(
        AUTHSERVER_BREACHED_PASSWORDS="pwnedpasswords",
        AUTHSERVER_BREACHED_PASSWORDS_URL=range_api,
    )
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account()
    assert actions.login().status_code == 302
    from tests.conftest import PASSWORD

    page = actions.client.get("/account/password").get_data(as_text=True)
    refused = actions.client.post(
        "/account/password",
        data={
            "csrf_token": csrf_of(page),
            "current_password": PASSWORD,
            "password": LEAKED,
            "password_confirm": LEAKED,
        },
    )
    assert refused.status_code == 400
    assert "fuites de données connues" in html.unescape(refused.get_data(as_text=True))
