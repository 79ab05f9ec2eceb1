"""Security events in Elastic Common Schema, hash-chained, to a file or RFC 5424 syslog
(issue 15); ``authserver events verify`` finds an edited, removed or moved line."""

from __future__ import annotations

import json
import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from authserver.alerts import ecs
from authserver.cli import cli
from tests.alerts.alert_helpers import browser
from tests.alerts.console_helpers import add_user
from tests.conftest import PASSWORD

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def test_a_login_failure_as_ecs() -> None:
    doc = ecs.document(
        "login",
        {
            "account": None,
            "username_attempt": "inconnu",
            "ip": "192.0.2.1",
            "user_agent": "Firefox",
            "method": "password",
            "outcome": "throttled",
            "reason": "bad_credentials",
        },
        NOW,
    )
    assert doc["@timestamp"] == "2026-12-05T12:00:00+00:00"
    assert doc["event"]["action"] == "login" and doc["event"]["kind"] == "event"
    assert doc["event"]["category"] == ["authentication"]
    assert (doc["event"]["outcome"], doc["event"]["reason"]) == (
        "failure",
        "throttled: bad_credentials",
    )
    assert doc["source"] == {"ip": "192.0.2.1"}
    assert doc["user_agent"] == {"original": "Firefox"}
    assert doc["authserver"] == {"username_attempt": "inconnu", "method": "password"}
    assert "user" not in doc


def test_an_actor_and_a_target() -> None:
    doc = ecs.document("helpdesk_action", {"actor": "agent.x", "user": "emma"}, NOW)
    assert doc["user"] == {"name": "agent.x", "target": {"name": "emma"}}
    assert doc["event"]["type"] == ["admin", "change"]


def _sealed(count: int, chain: ecs.Chain | None = None) -> list[str]:
    chain = chain or ecs.Chain()
    return [
        chain.seal(ecs.document("login", {"account": f"u{i}", "outcome": "success"}, NOW))
        for i in range(count)
    ]


def test_the_chain_shows_edits_removals_and_moves() -> None:
    lines = _sealed(5)
    assert ecs.verify(lines).ok
    assert json.loads(lines[2])["event"]["sequence"] == 3

    edited = list(lines)
    edited[2] = edited[2].replace('"u2"', '"u9"')
    assert [n for n, _ in ecs.verify(edited).problems] == [3]

    removed = lines[:2] + lines[3:]
    assert [n for n, _ in ecs.verify(removed).problems] == [3]

    moved = [lines[0], lines[2], lines[1], lines[3], lines[4]]
    assert not ecs.verify(moved).ok

    # Two processes writing one file: two chains, interleaved, both whole.
    other = _sealed(3)
    mixed = [lines[0], other[0], lines[1], other[1], other[2], lines[2]]
    report = ecs.verify(mixed)
    assert report.ok and len(report.chains) == 2

    # A file that starts mid-chain (rotated) is fine; garbage is not.
    assert ecs.verify(lines[2:]).ok
    assert ecs.verify([*lines, "pas du json"]).problems == [(6, "ligne illisible ou sans chaînage")]


def test_the_verify_command(tmp_path: Path) -> None:
    path = tmp_path / "security.jsonl"
    lines = _sealed(4)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    good = CliRunner().invoke(cli, ["events", "verify", str(path)])
    assert good.exit_code == 0 and good.output.startswith("Journal intègre : 4 lignes")
    path.write_text("\n".join([lines[0], lines[1], lines[3]]) + "\n", encoding="utf-8")
    bad = CliRunner().invoke(cli, ["events", "verify", str(path)])
    assert bad.exit_code == 1
    assert "ligne 3 : chaîne rompue" in bad.output


def test_the_servers_file_verifies(make_app, smtp, tmp_path: Path) -> None:
    target = tmp_path / "security.jsonl"
    app = make_app(AUTHSERVER_SECURITY_LOG=str(target))
    add_user(app, "anne.fichier")
    for password in (PASSWORD, "mauvais", PASSWORD):
        browser(app, smtp).login("anne.fichier", password)
    written = target.read_text(encoding="utf-8").splitlines()
    assert len(written) >= 3
    assert ecs.verify(written).ok
    written[1] = written[1].replace("anne.fichier", "autre.nom")
    assert not ecs.verify(written).ok


# --------------------------------------------------------------------------- syslog


class _Receiver:
    """A real syslog receiver: UDP datagrams, or TCP with octet counting (RFC 6587)."""

    def __init__(self, protocol: str) -> None:
        self.messages: list[bytes] = []
        self.arrived = threading.Condition()
        received = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                received.add(self.request[0])

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    length = b""
                    while not length.endswith(b" "):
                        char = self.rfile.read(1)
                        if not char:
                            return
                        length += char
                    received.add(self.rfile.read(int(length)))

        server_class = (
            socketserver.ThreadingUDPServer
            if protocol == "udp"
            else (socketserver.ThreadingTCPServer)
        )
        self.server = server_class(("127.0.0.1", 0), Udp if protocol == "udp" else Tcp)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, message: bytes) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def wait_for(self, count: int) -> list[bytes]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=10)
            return list(self.messages)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["udp", "tcp"])
def receiver(request) -> Iterator[_Receiver]:
    server = _Receiver(request.param)
    server.protocol = request.param  # type: ignore[attr-defined]
    yield server
    server.stop()


HEADER = re.compile(
    r"<(?P<pri>\d+)>1 (?P<time>\S+Z) (?P<host>\S+) authserver (?P<pid>\d+) (?P<msgid>\S+) - "
)


def test_rfc5424_syslog_to_a_real_receiver(make_app, smtp, receiver) -> None:
    url = f"syslog+{receiver.protocol}://127.0.0.1:{receiver.port}"
    app = make_app(AUTHSERVER_SECURITY_LOG=url)
    add_user(app, "paul.syslog")
    browser(app, smtp).login("paul.syslog", "mauvais mot de passe")
    browser(app, smtp).login("paul.syslog", PASSWORD)
    messages = receiver.wait_for(2)
    bodies = []
    for raw in messages:
        text = raw.decode()
        match = HEADER.match(text)
        assert match, text[:120]
        assert int(match["pri"]) == 10 * 8 + 6  # authpriv.info
        assert match["msgid"] == "login"
        bodies.append(text[match.end() :])
    docs = [json.loads(body) for body in bodies]
    assert [d["event"]["outcome"] for d in docs] == ["failure", "success"]
    assert ecs.verify(bodies).ok


def test_an_unreachable_receiver_never_fails_a_login(make_app, smtp) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(AUTHSERVER_SECURITY_LOG=f"syslog+tcp://127.0.0.1:{port}")
    add_user(app, "paul.syslog")
    assert browser(app, smtp).login("paul.syslog", PASSWORD).status_code == 302


@pytest.mark.parametrize("value", ["syslog+tcp://", "syslog+udp://hote", "syslog+tls://h:1"])
def test_bad_syslog_urls_stop_the_server(tmp_path, value) -> None:
    from authserver.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
                "AUTHSERVER_SECRET_KEY": "k" * 32,
                "AUTHSERVER_SECURITY_LOG": value,
            }
        )
    assert caught.value.variable == "AUTHSERVER_SECURITY_LOG"


# --------------------------------------------------------------------------- coverage


def test_every_event_the_code_writes_has_its_ecs_categories() -> None:
    """A new event type without its category and type would fall back to « iam / info »."""
    root = Path(__file__).resolve().parents[2] / "authserver"
    pattern = re.compile(r"(?:\bemit|after_commit)\(\s*(?:[\w.()]+,\s*)?\"([a-z_]+)\"", re.S)
    written = {
        name
        for path in root.rglob("*.py")
        for name in pattern.findall(path.read_text(encoding="utf-8"))
    }
    assert len(written) >= 25, sorted(written)
    assert written - set(ecs.ACTIONS) == set()


def test_account_security_events_reach_the_log(make_app, smtp, tmp_path: Path) -> None:
    """Sign-up, activation, login, passkey added/renamed/removed, password and e-mail
    changes, helpdesk lock/unlock, sessions revoked: each leaves its ECS line, once
    committed, and the file's chain holds."""
    from authserver.accounts import helpdesk
    from authserver.db import get_database
    from authserver.models import User
    from tests.conftest import Actions, csrf_of
    from tests.staff_login import enrol_passkey

    target = tmp_path / "security.jsonl"
    app = make_app(AUTHSERVER_SECURITY_LOG=str(target))
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account("nina.events")
    assert actions.login("nina.events").status_code == 302
    enrol_passkey(app, actions.client)
    page = actions.client.get("/account/passkeys").get_data(as_text=True)
    passkey_id = page.split('data-passkey-id="', 1)[1].split('"', 1)[0]
    actions.client.post(
        f"/account/passkeys/{passkey_id}/rename",
        data={"csrf_token": csrf_of(page), "name": "Mon téléphone"},
    )
    actions.client.post(
        f"/account/passkeys/{passkey_id}/delete", data={"csrf_token": csrf_of(page)}
    )
    with app.test_request_context():
        from authserver import db

        session = db.session()
        user = session.query(User).filter_by(username="nina.events").one()
        operator = helpdesk.Actor(id=None, label="cli:test", role=helpdesk.OPERATOR)
        for action in ("lock", "unlock"):
            helpdesk.perform(session, target=user, actor=operator, action=action, reason="test")
        session.commit()
        # A change rolled back writes nothing.
        helpdesk.perform(session, target=user, actor=operator, action="lock", reason="non")
        session.rollback()
    get_database(app).dispose()
    docs = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    seen = [d["event"]["action"] for d in docs]
    for expected in (
        "account_created",
        "account_activated",
        "login",
        "passkey_added",
        "passkey_renamed",
        "passkey_removed",
        "account_locked",
        "account_unlocked",
        "session_revoked",
        "helpdesk_action",
    ):
        assert expected in seen, (expected, seen)
    assert seen.count("account_locked") == 1
    (locked,) = [d for d in docs if d["event"]["action"] == "helpdesk_action"][:1]
    assert locked["user"] == {"name": "cli:test", "target": {"name": "nina.events"}}
    assert ecs.verify(target.read_text(encoding="utf-8").splitlines()).ok
