"""The TLS of the connection to the mail relay: whose certificate is checked, and how.

smtplib, when given no context (``SMTP_SSL(...)``, ``starttls()``), encrypts but checks
nothing: any machine between the server and its relay could present any certificate, read
the relay's password at login, and read or change every e-mail, each holding an activation,
password reset or « pas moi » link that grants access to an account. So ``smtps://`` and
``?starttls=1`` relays get Python's default context: the certificate must chain to a
trusted authority (the system's, or the bundle named by ``SSL_CERT_FILE`` for a relay
with a certificate of a private authority) and name the relay's host.

A relay on this machine's loopback interface (``localhost``, ``127.0.0.1``, ``::1``) is not
checked: no network lies between the two, and local relays (a postfix beside the server)
commonly present a self-signed certificate.
"""

from __future__ import annotations

import functools
import os
import ssl

from authserver.config import is_loopback_host


def verifies(host: str) -> bool:
    """Whether the relay at ``host`` must present a certificate trusted for that name."""
    return not is_loopback_host(host)


def context_for(host: str) -> ssl.SSLContext:
    """The TLS context of a connection to the relay at ``host``: made once (loading the
    trusted authorities took 15 ms, at every delivery round) and again only when OpenSSL's
    variables name other authorities."""
    return _context(verifies(host), os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _context(verify: bool, _cafile: str | None, _capath: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()  # reads SSL_CERT_FILE and SSL_CERT_DIR now
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def failure_detail(exc: BaseException) -> str:
    """What an operator needs of a failed TLS check (« self-signed certificate », « Hostname
    mismatch… »): its class and the verification's own message, no secret in either."""
    detail = getattr(exc, "verify_message", None)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
