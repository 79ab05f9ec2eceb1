"""The test helpers of tests/services.py against the real services."""

from __future__ import annotations

import smtplib
import socket
import time
import uuid
from email.message import EmailMessage

import pytest

from tests.services import LiveServer, free_port, html_of, text_of


def _mail(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "noreply@example.test"
    msg["To"] = "alice@example.test"
    msg["Subject"] = subject
    msg.set_content("Bonjour Alice,\nvotre code : 123456\n")
    msg.add_alternative("<p>Bonjour <b>Alice</b></p>", subtype="html")
    return msg


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_smtp_receives_stops_and_restarts_on_same_port(smtp):
    assert smtp.url == f"smtp://127.0.0.1:{smtp.port}"
    with smtplib.SMTP("127.0.0.1", smtp.port, timeout=5) as client:
        client.send_message(_mail("Premier é"))
    [msg] = smtp.wait_for(1)
    assert msg["Subject"] == "Premier é"
    assert "votre code : 123456" in text_of(msg)
    assert "<b>Alice</b>" in html_of(msg)
    assert smtp.envelopes == [("noreply@example.test", ["alice@example.test"])]

    port = smtp.port
    smtp.stop()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", port, timeout=5)

    smtp.start()
    assert smtp.port == port
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.send_message(_mail("Second"))
    assert [m["Subject"] for m in smtp.wait_for(2)] == ["Premier é", "Second"]

    smtp.clear()
    with pytest.raises(AssertionError, match="expected at least 1 e-mail"):
        smtp.wait_for(1, timeout=0.2)


@pytest.mark.pg
def test_postgres_connects_and_creates_database(postgres):
    import psycopg

    assert postgres.url("x") == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/x"
    name = f"t_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    try:
        with psycopg.connect(postgres.dsn(name)) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
            conn.execute("CREATE TABLE t (id int primary key)")
    finally:
        postgres.drop_database(name)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.dsn(name), connect_timeout=2)


@pytest.mark.pg
def test_postgres_restart_keeps_port_and_data(postgres):
    import psycopg

    port = postgres.port
    name = f"r_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    conn = psycopg.connect(postgres.dsn(name), autocommit=True)
    started = time.monotonic()
    postgres.restart()
    elapsed = time.monotonic() - started
    assert postgres.port == port
    with pytest.raises(psycopg.OperationalError):  # the old connection died with the server
        conn.execute("SELECT 1")
    conn.close()
    with psycopg.connect(postgres.dsn(name)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    postgres.drop_database(name)
    assert elapsed < 10


@pytest.mark.pg
def test_redis_answers_ping(redis_server):
    import redis

    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping() is True
    client.set("k", "v")
    assert client.get("k") == b"v"
    client.close()


@pytest.mark.e2e
def test_browser_reads_page_from_live_server(page):
    from flask import Flask

    app = Flask(__name__)

    @app.get("/")
    def index():
        return "<!doctype html><title>t</title><h1>Bonjour depuis Flask</h1>"

    with LiveServer(app) as live:
        assert live.url.startswith("http://localhost:")
        page.goto(live.url + "/")
        assert page.locator("h1").inner_text() == "Bonjour depuis Flask"
        # a secure context on localhost: WebAuthn is available
        assert page.evaluate("window.isSecureContext && !!window.PublicKeyCredential")


@pytest.mark.e2e
def test_virtual_authenticator_attaches(page):
    from tests.fixtures_services import add_virtual_authenticator

    cdp, authenticator_id = add_virtual_authenticator(page)
    assert authenticator_id
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert creds["credentials"] == []


def test_free_port_never_gives_the_same_port_twice():
    from tests.services import free_port

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
