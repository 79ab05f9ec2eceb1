"""Delivery of queued e-mails: claim, send, record; retry with exponential backoff.

Several workers (threads, processes, instances) may run at once: a row is
claimed with a conditional UPDATE that only one of them can win, and the claim
is a lease, so a worker that dies mid-send releases its rows after a minute.
"""

from __future__ import annotations

import logging
import random
import smtplib
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import Protocol

import flask_mail
from flask import Flask
from sqlalchemy import or_, select, update

from authserver.config import Settings
from authserver.db import Database
from authserver.metrics import MAIL_FAILURES, MAIL_SENT
from authserver.models import OutboxMail, utcnow

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
SMTP_TIMEOUT = 15


@dataclass(frozen=True)
class Outgoing:
    id: int
    recipient: str
    subject: str
    body_text: str
    body_html: str | None


class Transport(Protocol):
    def send(self, mail: Outgoing) -> None: ...


class ConsoleTransport:
    """Development: print each e-mail to the terminal (rows stay for the dev mailbox)."""

    def send(self, mail: Outgoing) -> None:
        sys.stdout.write(
            f"\n===== E-mail n°{mail.id} à {mail.recipient} =====\n"
            f"Objet : {mail.subject}\n\n{mail.body_text}\n"
            "===== fin de l'e-mail =====\n"
        )
        sys.stdout.flush()


class _TimeoutConnection(flask_mail.Connection):
    """Flask-Mail opens SMTP without a timeout; a stuck server must not stall delivery."""

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        mail = self.mail
        host: smtplib.SMTP | smtplib.SMTP_SSL
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(mail.server, mail.port, timeout=SMTP_TIMEOUT)
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=SMTP_TIMEOUT)
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host


class SMTPTransport:
    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.sender = settings.mail_sender
        self.domain = settings.mail_sender.rsplit("@", 1)[-1].strip("> ") or "localhost"
        self.mail = flask_mail.Mail()
        self.state = self.mail.init_mail(
            {
                "MAIL_SERVER": settings.mail.host,
                "MAIL_PORT": settings.mail.port,
                "MAIL_USERNAME": settings.mail.username,
                "MAIL_PASSWORD": settings.mail.password,
                "MAIL_USE_TLS": settings.mail.use_starttls,
                "MAIL_USE_SSL": settings.mail.use_ssl,
                "MAIL_DEFAULT_SENDER": settings.mail_sender,
                "MAIL_SUPPRESS_SEND": False,
            }
        )
        # Flask-Mail reads its state from the app while building the message.
        app.extensions["mail"] = self.state

    def send(self, mail: Outgoing) -> None:
        with self.app.app_context():
            self._send(mail)

    def _send(self, mail: Outgoing) -> None:
        message = flask_mail.Message(
            subject=mail.subject,
            recipients=[mail.recipient],
            body=mail.body_text,
            html=mail.body_html,
            sender=self.sender,
            extra_headers={"Auto-Submitted": "auto-generated"},
        )
        # A stable id lets a receiving system spot the rare duplicate after a crash.
        message.msgId = make_msgid(idstring=f"outbox-{mail.id}", domain=self.domain)
        with _TimeoutConnection(self.state) as connection:
            connection.send(message)


def make_transport(app: Flask, settings: Settings) -> Transport:
    if settings.console_mail:
        return ConsoleTransport()
    return SMTPTransport(app, settings)


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds before the next try: base * 2^(n-1), capped, with ±20 % jitter."""
    delay = min(settings.mail_retry_base * (2 ** max(attempts - 1, 0)), settings.mail_retry_max)
    return delay * random.uniform(0.8, 1.2)


def _claim(database: Database, now: datetime, limit: int) -> list[Outgoing]:
    claimed: list[Outgoing] = []
    with database.session_scope() as session:
        due = session.scalars(
            select(OutboxMail.id)
            .where(
                OutboxMail.status == "pending",
                OutboxMail.next_attempt_at <= now,
                or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
            )
            .order_by(OutboxMail.id)
            .limit(limit)
        ).all()
    for mail_id in due:
        with database.session_scope() as session:
            won = session.execute(
                update(OutboxMail)
                .where(
                    OutboxMail.id == mail_id,
                    OutboxMail.status == "pending",
                    or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
                )
                .values(claimed_until=now + LEASE)
            ).rowcount
            if won == 1:
                row = session.get(OutboxMail, mail_id)
                assert row is not None
                claimed.append(
                    Outgoing(row.id, row.recipient, row.subject, row.body_text, row.body_html)
                )
    return claimed


def deliver_due(
    database: Database, transport: Transport, settings: Settings, limit: int = 50
) -> tuple[int, int]:
    """Send what is due now; return (sent, failed attempts)."""
    sent = failed = 0
    for mail in _claim(database, utcnow(), limit):
        try:
            transport.send(mail)
        except Exception as exc:  # any transport failure is retried later
            failed += 1
            MAIL_FAILURES.inc()
            _record_failure(database, mail.id, exc, settings)
            # The server is probably down: leave the rest for the next round.
            _release_rest(database, mail.id)
            break
        sent += 1
        MAIL_SENT.inc()
        with database.session_scope() as session:
            session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail.id)
                .values(
                    status="sent",
                    sent_at=utcnow(),
                    attempts=OutboxMail.attempts + 1,
                    claimed_until=None,
                    last_error=None,
                )
            )
    return sent, failed


def _record_failure(database: Database, mail_id: int, exc: Exception, settings: Settings) -> None:
    with database.session_scope() as session:
        row = session.get(OutboxMail, mail_id)
        if row is None:
            return
        row.attempts += 1
        row.claimed_until = None
        # Class and short text only: never the message body (it may hold a link token).
        row.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
        if row.attempts >= settings.mail_max_attempts:
            row.status = "failed"
        row.next_attempt_at = utcnow() + timedelta(seconds=backoff(row.attempts, settings))
    log.warning("mail %s not delivered (attempt failed): %s", mail_id, type(exc).__name__)


def _release_rest(database: Database, failed_id: int) -> None:
    with database.session_scope() as session:
        session.execute(
            update(OutboxMail)
            .where(
                OutboxMail.status == "pending",
                OutboxMail.id != failed_id,
                OutboxMail.claimed_until.is_not(None),
                OutboxMail.claimed_until > utcnow(),
            )
            .values(claimed_until=None)
        )


def next_due_in(database: Database) -> float | None:
    with database.session_scope() as session:
        when = session.scalar(
            select(OutboxMail.next_attempt_at)
            .where(OutboxMail.status == "pending")
            .order_by(OutboxMail.next_attempt_at)
            .limit(1)
        )
    if when is None:
        return None
    return max((when - utcnow()).total_seconds(), 0.0)


class DeliveryWorker:
    """A daemon thread that delivers due mail, woken at once after a commit that queued some."""

    def __init__(
        self, app: Flask, database: Database, transport: Transport, settings: Settings
    ) -> None:
        self.app = app
        self.database = database
        self.transport = transport
        self.settings = settings
        self.wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mail-delivery", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> tuple[int, int]:
        return deliver_due(self.database, self.transport, self.settings)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wakeup.clear()
            try:
                self.run_once()
                wait = next_due_in(self.database)
            except Exception:
                # Database unreachable: try again shortly; nothing is lost.
                log.warning("mail delivery round failed; retrying", exc_info=False)
                wait = 2.0
            self.wakeup.wait(timeout=min(wait if wait is not None else 30.0, 30.0) or 0.05)
