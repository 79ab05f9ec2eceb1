"""The relay's certificate is checked before any e-mail (or the relay's password) goes to it.

A real relay (aiosmtpd) offering TLS by STARTTLS or from the first byte (``smtps://``), its
certificate issued by a test authority for this machine's names. Reached by a name that is
not loopback (this machine's hostname), the certificate must be trusted: the e-mail waits
in the outbox while it is not, and leaves once the authority is trusted (``SSL_CERT_FILE``,
as an operator of a private authority does). A relay on the loopback interface is not
checked (relay_tls.py).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from sqlalchemy import select

from authserver import settings_of
from authserver.config import parse_mail_url
from authserver.db import get_database
from authserver.mail import relay_tls, worker_of
from authserver.mail.delivery import SMTPTransport, deliver_due
from authserver.models import OutboxMail
from tests.mail.test_delivery import queue
from tests.services import SMTPServer

HOSTNAME = socket.gethostname()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A test authority's certificate, and the relay's certificate and key it issued for
    this machine's names."""
    folder = tmp_path_factory.mktemp("relay-tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _certificate("Autorité de test", ca_key, ("Autorité de test", ca_key))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(HOSTNAME), x509.DNSName("localhost")]
    relay = (
        _certificate(HOSTNAME, key, ("Autorité de test", ca_key))
        .add_extension(
            x509.SubjectAlternativeName(
                [*names, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "relay.pem", folder / "relay.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(relay.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(params=["starttls", "smtps"])
def relay(request: pytest.FixtureRequest, authority) -> Iterator[SMTPServer]:
    server = SMTPServer(tls=server_side(authority), implicit_tls=request.param == "smtps")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def server_side(authority: tuple[Path, Path, Path]) -> ssl.SSLContext:
    """The relay's TLS context: its certificate and key, issued by the test authority."""
    _, certificate, key = authority
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context


def due_now(app: Flask) -> None:
    """Every mail of the outbox due at once, not after its retry's backoff."""
    with get_database(app).session_scope() as session:
        for row in session.scalars(select(OutboxMail)):
            row.next_attempt_at = row.created_at


def deliver(app: Flask, url: str) -> tuple[int, int]:
    settings = settings_of(app).with_overrides(mail=parse_mail_url(url))
    return deliver_due(get_database(app), SMTPTransport(settings), settings)


def statuses(app: Flask) -> list[str]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(OutboxMail.status).order_by(OutboxMail.id)))


@pytest.fixture
def resolvable_hostname() -> str:
    try:
        socket.getaddrinfo(HOSTNAME, None)
    except OSError:
        pytest.skip(f"this machine's hostname {HOSTNAME!r} does not resolve")
    if relay_tls.verifies(HOSTNAME) is False:
        pytest.skip(f"this machine's hostname {HOSTNAME!r} counts as loopback")
    return HOSTNAME


def test_an_untrusted_certificate_keeps_the_mail_until_its_authority_is_trusted(
    app: Flask, relay: SMTPServer, authority, resolvable_hostname, monkeypatch, caplog
):
    worker_of(app).stop()
    queue(get_database(app), ["client@entreprise.fr"])
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = relay.url_for(resolvable_hostname)
    with caplog.at_level(logging.WARNING, logger="authserver.mail.delivery"):
        assert deliver(app, url) == (0, 1)
    assert relay.messages == []
    assert statuses(app) == ["pending"]
    (line,) = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert "SSLCertVerificationError" in line and "certificate" in line

    # The operator trusts the private authority: the same mail leaves.
    monkeypatch.setenv("SSL_CERT_FILE", str(authority[0]))
    due_now(app)
    assert deliver(app, url) == (1, 0)
    assert [m["To"] for m in relay.wait_for(1)] == ["client@entreprise.fr"]
    assert statuses(app) == ["sent"]


def test_a_relay_on_the_loopback_interface_is_not_checked(
    app: Flask, relay: SMTPServer, monkeypatch
):
    """A local relay's self-signed (here: unknown) certificate does not stop the mail."""
    worker_of(app).stop()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    queue(get_database(app), ["client@entreprise.fr"])
    assert deliver(app, relay.url_for("localhost")) == (1, 0)
    assert len(relay.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("host", "checked"),
    [
        ("relay.entreprise.fr", True),
        ("smtp.example.org", True),
        ("10.0.0.25", True),
        ("localhost", False),
        ("127.0.0.1", False),
        ("::1", False),
    ],
)
def test_which_relays_are_checked(host: str, checked: bool):
    context = relay_tls.context_for(host)
    assert relay_tls.verifies(host) is checked
    assert (context.verify_mode == ssl.CERT_REQUIRED) is checked
    assert context.check_hostname is checked


def test_a_relay_that_no_longer_offers_starttls_keeps_the_mail_for_later(
    app: Flask, authority, caplog
):
    """``?starttls=1`` and a relay (or a machine on the way) that does not offer it: nothing
    goes in clear, and the mail is not failed for good either: it is the relay's fault, not
    the mail's, and it leaves once the relay offers TLS again."""
    worker_of(app).stop()
    plain = SMTPServer().start()
    url = plain.url + "?starttls=1"
    try:
        queue(get_database(app), ["client@entreprise.fr", "autre@entreprise.fr"])
        with caplog.at_level(logging.WARNING, logger="authserver.mail.delivery"):
            assert deliver(app, url) == (0, 1)
        assert plain.messages == []
        assert statuses(app) == ["pending", "pending"]
        assert any("RelayWithoutTLS" in r.getMessage() for r in caplog.records)
    finally:
        plain.stop()

    # The relay offers STARTTLS again, on the same port.
    relay = SMTPServer(plain.port, tls=server_side(authority)).start()
    try:
        due_now(app)
        assert deliver(app, url) == (2, 0)
        assert len(relay.wait_for(2)) == 2
        assert statuses(app) == ["sent", "sent"]
    finally:
        relay.stop()


def test_a_context_is_made_once_until_the_trusted_authorities_change(monkeypatch, authority):
    """Loading the trusted authorities takes milliseconds: not at every delivery round."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    first = relay_tls.context_for("relay.entreprise.fr")
    assert relay_tls.context_for("relay.entreprise.fr") is first
    assert relay_tls.context_for("localhost") is not first
    monkeypatch.setenv("SSL_CERT_FILE", str(authority[0]))
    assert relay_tls.context_for("relay.entreprise.fr") is not first
