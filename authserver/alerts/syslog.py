"""RFC 5424 syslog over UDP or TCP for the security events (AUTHSERVER_SECURITY_LOG=
``syslog+udp://host:port`` or ``syslog+tcp://host:port``).

The standard library's ``SysLogHandler`` writes the older BSD format (RFC 3164: no year, no
structured header) and frames TCP messages with a newline, which a JSON line may not be
safe with; SIEMs expect RFC 5424 with octet counting over TCP (RFC 6587 §3.4.1). The
header is small enough to write here: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID -``
then the sealed ECS line. Facility authpriv (10): security messages; severity 6
(informational) for an event, 4 (warning) for an alert.

A syslog outage never fails a login: the line is dropped, counted in
``authserver_security_log_dropped_total``, and the next line reconnects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from datetime import UTC, datetime
from urllib.parse import urlsplit

from authserver.metrics import SECURITY_LOG_DROPPED as DROPPED

FACILITY_AUTHPRIV = 10
SEVERITY_INFO = 6
SEVERITY_WARNING = 4
APP_NAME = "authserver"
TIMEOUT = 2.0
SCHEMES = ("syslog+udp", "syslog+tcp")


def parse(target: str) -> tuple[str, str, int] | None:
    """(protocol, host, port) of a ``syslog+udp://`` or ``syslog+tcp://`` URL, else None
    (ValueError for such a URL without a host or a valid port)."""
    parts = urlsplit(target)
    if parts.scheme not in SCHEMES:
        return None
    if not parts.hostname or parts.port is None:
        raise ValueError("hôte et port attendus, par exemple syslog+tcp://siem.example.fr:6514")
    return parts.scheme.removeprefix("syslog+"), parts.hostname, parts.port


def header(*, alert: bool, msgid: str, when: datetime, hostname: str) -> str:
    """The RFC 5424 header (§6.2) of one message."""
    severity = SEVERITY_WARNING if alert else SEVERITY_INFO
    pri = FACILITY_AUTHPRIV * 8 + severity
    stamp = when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    safe_msgid = "".join(c for c in msgid if 33 <= ord(c) <= 126)[:32] or "-"
    return f"<{pri}>1 {stamp} {hostname or '-'} {APP_NAME} {os.getpid()} {safe_msgid} -"


class Rfc5424Handler(logging.Handler):
    """Send each formatted record as one RFC 5424 message (UDP datagram, or TCP with
    octet counting)."""

    def __init__(self, protocol: str, host: str, port: int) -> None:
        super().__init__(logging.INFO)
        self.protocol, self.address = protocol, (host, port)
        self.hostname = socket.gethostname()
        self._socket: socket.socket | None = None
        self._socket_lock = threading.Lock()

    def _connect(self) -> socket.socket:
        if self.protocol == "udp":
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return socket.create_connection(self.address, timeout=TIMEOUT)

    def message(self, record: logging.LogRecord) -> bytes:
        doc = getattr(record, "authserver_doc", None) or {}
        event = doc.get("event", {})
        head = header(
            alert=event.get("kind") == "alert",
            msgid=str(event.get("action", "-")),
            when=datetime.fromtimestamp(record.created, UTC),
            hostname=self.hostname,
        )
        return f"{head} {self.format(record)}".encode()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = self.message(record)
        except Exception:
            self.handleError(record)
            return
        if self.protocol == "tcp":
            payload = f"{len(payload)} ".encode() + payload
        with self._socket_lock:
            for attempt in (1, 2):  # a receiver restarted: reconnect once
                try:
                    if self._socket is None:
                        self._socket = self._connect()
                    if self.protocol == "udp":
                        self._socket.sendto(payload, self.address)
                    else:
                        self._socket.sendall(payload)
                    return
                except OSError:
                    self._close_socket()
                    if attempt == 2:
                        DROPPED.inc()

    def _close_socket(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None

    def close(self) -> None:
        with self._socket_lock:
            self._close_socket()
        super().close()
