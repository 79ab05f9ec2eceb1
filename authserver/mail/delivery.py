"""Delivery of queued e-mails: claim, send, record; retry with exponential backoff.

Several workers (threads, processes, instances) may run at once. Each claim is a small
batch of due rows stamped with a random **claim token** and a lease (``claimed_until``),
with the statements of ``authserver/leases.py`` (shared with the back-channel logouts):

- claiming is one statement: a materialised ``SELECT … FOR UPDATE SKIP LOCKED`` of the batch
  and its ``UPDATE`` on PostgreSQL (workers never wait for each other's rows), ``UPDATE …
  WHERE id IN (SELECT …)`` on SQLite (which runs one writer at a time anyway);
- once a quarter of the lease has gone by, the holder renews the rows it has yet to send *if
  it still holds the token*, so a batch may take as long as it needs; a row whose lease ran
  out and was taken by another worker is skipped, never sent twice;
- the sends are recorded, and the unsent rows released, in one transaction at the end of the
  batch; marking sent, recording a failure and releasing all match the token: a worker only
  ever touches its own claims.

A worker that dies mid-batch leaves its rows claimed; another worker takes them after the
lease (the receiving side may then see the mails already sent twice, with the same
Message-ID).

Failures: a recipient refused for good (5xx to RCPT TO) marks the row ``failed`` (``authserver
mail requeue`` puts it back); everything else is retried for ever at the capped backoff, so
an SMTP outage of any length delays mail but loses none.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import re
import secrets
import smtplib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import flask_mail
from flask import Flask
from jinja2 import Environment
from sqlalchemy import case, update

from authserver.config import Settings
from authserver.db import Database
from authserver.leases import Outbox
from authserver.mail import relay_tls
from authserver.mail.message import SMTPUTF8_OPTION, address, needs_smtputf8, render
from authserver.mail.pace import late
from authserver.mail.rendering import FACTS, WAITING, bodies
from authserver.metrics import MAIL_FAILURES, MAIL_SENT
from authserver.models import OutboxMail, utcnow

log = logging.getLogger(__name__)

# A lease covers a few sends, not a whole batch: well above the SMTP timeouts. The batch's
# rows are renewed together once a quarter of it has gone by, so a send starts with three
# quarters of a lease ahead (issue 16: renewing before each send was one more write
# transaction per e-mail on SQLite's single lock).
LEASE = timedelta(seconds=120)
_monotonic = time.monotonic
# Mails claimed, then recorded, together: each batch is a claim, a first-due look and a
# record, about 1.5 ms of CPU and two turns of SQLite's write lock whatever its size. At 10
# that was a third of an alert's delivery CPU (0.42-0.47 ms per e-mail in one thread, 25:
# 0.34-0.38); in a peak of new-browser logins the deliverer sent about twice as many alerts
# during the peak, at the same login rates (bench/new_browser.py, interleaved runs). The
# price: a deliverer killed mid-batch leaves up to 24 sent mails claimed, sent once more
# after the lease (same Message-ID, see leases.py) instead of up to 9.
BATCH = 25
IDLE_POLL = 30.0  # an in-process worker's look when nothing woke it (a safety net)
# A wake-up less than GATHER_AFTER seconds after the last round waits ``mail_gather``
# seconds (AUTHSERVER_MAIL_GATHER_SECONDS, a tenth by default) for the rest of its burst: an
# e-mail alone goes at once, a burst's go together a moment later.
GATHER_AFTER = 1.0
SMTP_TIMEOUT = 15

# Answers about one mail: the next mails of the batch may go on the same connection.
# SMTPNotSupportedError: an address that needs SMTPUTF8, to a relay that does not announce it.
_ONE_MAIL = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPNotSupportedError)


@dataclass(frozen=True)
class Outgoing:
    id: int
    recipient: str
    subject: str
    body_text: str
    body_html: str | None
    created_at: datetime | None = None
    # A mail queued as its facts (an alert): its words are made just before it is sent.
    template: str | None = None
    context: str | None = None


class Sender(Protocol):
    """One open channel for a batch (one SMTP connection)."""

    def send(self, mail: Outgoing) -> None: ...

    def close(self) -> None: ...


class Transport(Protocol):
    def open(self) -> Sender: ...

    def send(self, mail: Outgoing) -> None: ...


class ConsoleTransport:
    """Development: print each e-mail to the terminal (rows stay for the dev mailbox)."""

    def open(self) -> ConsoleTransport:
        return self

    def close(self) -> None:
        pass

    def send(self, mail: Outgoing) -> None:
        sys.stdout.write(
            f"\n===== E-mail n°{mail.id} à {mail.recipient} =====\n"
            f"Objet : {mail.subject}\n\n{mail.body_text}\n"
            "===== fin de l'e-mail =====\n"
        )
        sys.stdout.flush()


# An address smtplib's ``quoteaddr`` returns as ``<address>``: a dot-atom local part and
# domain of the plainest characters (nearly every employer's address; the rest go to it).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)


def envelope_address(value: str) -> str:
    """``smtplib.quoteaddr(value)``, without parsing a plain address as a header: its
    parser was a sixth of an alert e-mail's delivery CPU, once for MAIL and once for RCPT."""
    if _PLAIN_ADDRESS.fullmatch(value):
        return f"<{value}>"
    return _quoted(value)


@functools.lru_cache(maxsize=256)  # the sender's, with its display name, at every e-mail
def _quoted(value: str) -> str:
    return smtplib.quoteaddr(value)


class _Envelope(smtplib.SMTP):
    """``MAIL`` and ``RCPT`` as smtplib sends them, each address quoted by
    ``envelope_address``; with options (SMTPUTF8), smtplib's own."""

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        if options:
            return super().mail(sender, options)
        self.putcmd("mail", f"FROM:{envelope_address(sender)}")
        return self.getreply()

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        if options:
            return super().rcpt(recip, options)
        self.putcmd("rcpt", f"TO:{envelope_address(recip)}")
        return self.getreply()


class _EnvelopeSSL(_Envelope, smtplib.SMTP_SSL):
    pass


class _TimeoutConnection(flask_mail.Connection):
    """Flask-Mail opens SMTP without a timeout; a stuck server must not stall delivery."""

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        mail = self.mail
        host: smtplib.SMTP | smtplib.SMTP_SSL
        # smtplib checks no certificate unless given a context (relay_tls.py).
        if mail.use_ssl:
            context = relay_tls.context_for(mail.server)
            host = _EnvelopeSSL(mail.server, mail.port, timeout=SMTP_TIMEOUT, context=context)
        else:
            host = _Envelope(mail.server, mail.port, timeout=SMTP_TIMEOUT)
        try:
            if mail.use_tls:
                try:
                    host.starttls(context=relay_tls.context_for(mail.server))
                except smtplib.SMTPNotSupportedError as exc:
                    raise RelayWithoutTLS(str(exc)) from None
            if mail.username and mail.password:
                host.login(mail.username, mail.password)
        except BaseException:
            host.close()
            raise
        return host


class RelayWithoutTLS(smtplib.SMTPException):
    """``?starttls=1`` and the relay (or a machine on the way) does not offer STARTTLS.
    Nothing is sent in clear; the relay's failure, not a mail's: retried later like a relay
    that does not answer (smtplib's SMTPNotSupportedError would have failed each mail of the
    batch for good, as for an address the relay cannot carry)."""


def message_id(mail: Outgoing, domain: str) -> str:
    """The same Message-ID at every attempt, so a receiving system can spot a duplicate."""
    stamp = int(mail.created_at.timestamp() * 1_000_000) if mail.created_at else 0
    return f"<outbox-{mail.id}.{stamp}@{domain}>"


class _SMTPSession:
    """One SMTP connection for a whole batch, opened at the first send, reopened after a drop."""

    def __init__(self, transport: SMTPTransport) -> None:
        self.transport = transport
        self.connection: _TimeoutConnection | None = None

    def send(self, mail: Outgoing) -> None:
        data = self.transport.render(mail)
        if self.connection is None:
            self.connection = _TimeoutConnection(self.transport.state).__enter__()
        host = self.connection.host
        assert host is not None  # sending is never suppressed here
        if needs_smtputf8(mail.recipient):
            recipient, options = mail.recipient, [SMTPUTF8_OPTION]
        else:
            recipient, options = address(mail.recipient), []
        try:
            host.sendmail(self.transport.envelope_from, [recipient], data, mail_options=options)
        except _ONE_MAIL:
            raise  # the server answered about this mail only: the connection is still usable
        except Exception:
            self._drop()
            raise

    def _drop(self) -> None:
        if self.connection is not None and self.connection.host is not None:
            with contextlib.suppress(Exception):  # closing a broken socket
                self.connection.host.close()
        self.connection = None

    def close(self) -> None:
        if self.connection is not None and self.connection.host is not None:
            try:
                self.connection.host.quit()
            except Exception:
                self._drop()
        self.connection = None


class SMTPTransport:
    """SMTP through Flask-Mail's connection settings (TLS, login); the message's bytes are
    made by ``mail/message.py``."""

    def __init__(self, settings: Settings) -> None:
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
        self.envelope_from = address(settings.mail_sender)

    def render(self, mail: Outgoing) -> bytes:
        return render(
            sender=self.sender,
            recipient=mail.recipient,
            subject=mail.subject,
            body_text=mail.body_text,
            body_html=mail.body_html,
            message_id=message_id(mail, self.domain),
        )

    def open(self) -> _SMTPSession:
        return _SMTPSession(self)

    def send(self, mail: Outgoing) -> None:
        session = self.open()
        try:
            session.send(mail)
        finally:
            session.close()


def make_transport(settings: Settings) -> Transport:
    if settings.console_mail:
        return ConsoleTransport()
    return SMTPTransport(settings)


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds before the next try: base * 2^(n-1), capped, with ±20 % jitter."""
    exponent = min(max(attempts - 1, 0), 64)
    delay = min(settings.mail_retry_base * (2**exponent), settings.mail_retry_max)
    return delay * random.uniform(0.8, 1.2)


def is_permanent(exc: BaseException) -> bool:
    """A 5xx refusal of the recipient is final, and so is an address the relay cannot carry
    (no SMTPUTF8: ``authserver mail requeue`` once it does); anything else may work later."""
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    return False


def _concerns_one_mail(exc: BaseException) -> bool:
    """The server answered about this mail only: the next mails of the batch may go."""
    return isinstance(exc, _ONE_MAIL)


OUTBOX = Outbox(OutboxMail, waiting=WAITING)


_COLUMNS = (
    OutboxMail.id,
    OutboxMail.recipient,
    OutboxMail.subject,
    OutboxMail.body_text,
    OutboxMail.body_html,
    OutboxMail.created_at,
    OutboxMail.template,
    OutboxMail.context,
)


def _claim(
    database: Database,
    token: str,
    now: datetime,
    limit: int,
    statuses: tuple[str, ...] = ("pending",),
) -> tuple[list[Outgoing], bool]:
    """Claim up to ``limit`` due rows for ``token``, of each status in turn (one statement
    each, the longest due first); and whether the claims took SQLite's lock eagerly."""
    batch: list[Outgoing] = []
    eager = False
    for status in statuses:
        room = limit - len(batch)
        if room <= 0:
            break
        late_rows = False
        if database.is_sqlite:
            # A claim takes SQLite's one write lock even when it finds nothing: a look first.
            first = OUTBOX.first_due_created(database, now, status)
            if first is None:
                continue
            # Late mail no longer gives way to the logins for the lock (pace.py).
            late_rows = late(first, now)
        rows = OUTBOX.claim(
            database,
            token=token,
            now=now,
            limit=room,
            lease=LEASE,
            eager=late_rows,
            status=status,
            columns=_COLUMNS,
        )
        batch.extend(Outgoing(*row) for row in rows)
        eager = eager or late_rows
    return batch, eager


def _worded(mail: Outgoing, templates: Environment) -> Outgoing:
    """The mail with its words: as claimed, or made now from its facts (rendering.py)."""
    if mail.template is None:
        return mail
    text, html = bodies(
        templates, mail.subject, mail.body_text, mail.body_html, mail.template, mail.context
    )
    return replace(mail, body_text=text, body_html=html)


def _finish(
    database: Database, token: str, sent: list[int], unsent: list[int], eager: bool = False
) -> None:
    """The sends recorded and the rest of the batch given back, in one transaction."""
    won = OUTBOX.finish(database, token, sent=sent, release=unsent, eager=eager)
    for mail_id in sorted(set(sent) - won):
        log.warning("mail %s sent but its claim was lost: it may be sent twice", mail_id)


def _record_failure(
    database: Database,
    mail_id: int,
    token: str,
    exc: BaseException,
    settings: Settings,
    error: str | None = None,
) -> None:
    permanent = is_permanent(exc)
    recorded = OUTBOX.record_failure(
        database,
        mail_id,
        token,
        # Class and short text only: never the message body (it may hold a link token).
        error=error or f"{type(exc).__name__}: {str(exc)[:200]}",
        retry_in=lambda attempts: backoff(attempts, settings),
        give_up=lambda _attempts: permanent,
    )
    if recorded is None:
        return
    if permanent:
        log.warning("mail %s refused for good by the relay: marked failed", mail_id)
    else:
        log.warning(
            "mail %s not delivered (attempt failed): %s", mail_id, relay_tls.failure_detail(exc)
        )


def deliver_due(
    database: Database,
    transport: Transport,
    settings: Settings,
    limit: int = BATCH,
    should_stop: Callable[[], bool] | None = None,
    sender: Sender | None = None,
    templates: Environment | None = None,
) -> tuple[int, int]:
    """Claim one batch of due mail and send it on one connection; return (sent, failed).

    ``should_stop`` is asked between two mails: the mail being sent is finished, the rest of
    the batch released for another worker. ``sender``: a connection the caller keeps open
    for its next batches (and closes); by default one is opened for this batch.
    ``templates`` (the app's Jinja environment): the alerts queued as their facts are
    claimed too, after the mail queued with its words, and put into words one by one
    right before their send; without it, only mail queued with its words is claimed.

    Words made at send time are never written back: a sent alert keeps its half-kilobyte
    of facts (the dev mailbox words them again), where writing ~5 KB of words in a
    transaction of its own took SQLite's write lock from the logins for each alert.
    """
    token = secrets.token_hex(16)
    now = utcnow()
    statuses = WAITING if templates is not None else ("pending",)
    batch, eager = _claim(database, token, now, limit, statuses)
    if not batch:
        return 0, 0
    sent: list[int] = []
    failed = 0
    held = {mail.id for mail in batch}
    renewed_at = _monotonic()
    own = sender is None
    if sender is None:
        sender = transport.open()
    try:
        for mail in batch:
            if should_stop is not None and should_stop():
                break
            if _monotonic() - renewed_at > LEASE.total_seconds() / 4:
                # Sent rows too: they stay ours until the batch records them.
                held = OUTBOX.renew_all(database, sorted(held), token, LEASE)
                renewed_at = _monotonic()
            if mail.id not in held:
                continue  # the lease ran out and another worker has it now
            try:
                worded = _worded(mail, templates) if templates is not None else mail
            except Exception as exc:  # a template or a value: tried again with the backoff
                # The class only: a rendering error's text may quote the values (a link).
                failed += 1
                MAIL_FAILURES.inc()
                log.warning("mail %s could not be put into words: %s", mail.id, type(exc).__name__)
                error = f"{type(exc).__name__} (mise en forme)"
                _record_failure(database, mail.id, token, exc, settings, error=error)
                continue
            try:
                sender.send(worded)
            except Exception as exc:  # any transport failure is retried later
                failed += 1
                MAIL_FAILURES.inc()
                _record_failure(database, mail.id, token, exc, settings)
                if _concerns_one_mail(exc):
                    continue
                break  # the server is probably down: leave the rest for the next round
            sent.append(mail.id)
            MAIL_SENT.inc()
    finally:
        if own:
            sender.close()
        # A worker killed before this line leaves its sent rows claimed: another sends them
        # again after the lease (the same Message-ID each time, see leases.py).
        done = set(sent)
        unsent = [mail.id for mail in batch if mail.id not in done]
        _finish(database, token, sent, unsent, eager)
    return len(sent), failed


def next_due_in(database: Database) -> float | None:
    """Seconds until some mail (with its words or its facts) can be claimed."""
    return OUTBOX.next_due_in(database)


def requeue_failed(database: Database, ids: list[int] | None = None) -> int:
    """Put ``failed`` rows (all, or these ids) back in the queue, due now; return how many.

    An alert queued as its facts goes back to waiting as its facts: made ``pending`` without
    its words, it would have been sent empty.
    """
    statement = update(OutboxMail).where(OutboxMail.status == "failed")
    if ids:
        statement = statement.where(OutboxMail.id.in_(ids))
    waiting = case((OutboxMail.template.is_not(None), FACTS), else_="pending")
    with database.session_scope() as session:
        return session.execute(
            statement.values(
                status=waiting, next_attempt_at=utcnow(), claimed_until=None, claim_token=None
            ).execution_options(synchronize_session=False)
        ).rowcount


class DeliveryWorker:
    """A thread that delivers due mail, woken at once after a commit that queued some.

    It is a daemon thread only so that a forgotten worker never keeps a process alive;
    ``authserver serve`` (gunicorn's worker exit) and ``authserver mail deliver`` stop it
    explicitly, which lets the mail being sent finish and releases the rest of its batch.
    """

    def __init__(
        self, app: Flask, database: Database, transport: Transport, settings: Settings
    ) -> None:
        self.app = app
        self.database = database
        self.transport = transport
        self.settings = settings
        self.wakeup = threading.Event()
        # What a commit that queued mail calls: this thread's wake-up, or, under
        # ``authserver serve``, the doorbell of the deliverer beside the workers (child.py).
        self.notify: Callable[[], None] = self.wakeup.set
        # Seconds an idle worker waits before it looks again by itself. A worker in the web
        # process is woken by the commits that queue mail; ``authserver mail deliver`` is
        # not (another process's commits): it sets a short one (``--poll``).
        self.idle_poll = IDLE_POLL
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producers: list[Callable[[], int]] = []

    def add_producer(self, produce: Callable[[], int]) -> None:
        """Work that queues mail, run at the start of every round (before delivery), which
        returns how many items it handled, a batch at most (0: none was waiting).

        Requests whose e-mail depends on an account (password reset, new activation link)
        are resolved here, off the request path (``accounts/mail_jobs.py``).
        """
        self._producers.append(produce)

    def _produce(self) -> int:
        made = 0
        for produce in self._producers:
            try:
                made += produce()
            except Exception as exc:  # the database is away: the next round tries again
                # The class only: a database error's text carries the statement's parameters.
                log.warning("mail producer failed; retried next round: %s", type(exc).__name__)
        return made

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mail-delivery", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after the mail in progress (safe in a signal handler)."""
        self._stop.set()
        self.wakeup.set()

    def stop(self, timeout: float = SMTP_TIMEOUT + 5) -> bool:
        """Stop and wait; True when the thread is gone (False: a send outlived ``timeout``)."""
        self.request_stop()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("mail delivery still sending after %.0f s; leaving it", timeout)
            return False
        self._thread = None
        return True

    def run_once(self) -> tuple[int, int]:
        """Produce pending mail, then deliver everything due now, batch after batch, on one
        SMTP connection (opened at the first mail), and again while the producers find more
        (none waits for the next look); return the totals. The alerts queued as their facts
        are worded in the batches, each right before its send."""
        sent = failed = 0
        sender = self.transport.open()
        try:
            while not self._stop.is_set():
                made = self._produce()
                while not self._stop.is_set():
                    done, errors = deliver_due(
                        self.database,
                        self.transport,
                        self.settings,
                        should_stop=self._stop.is_set,
                        sender=sender,
                        templates=self.app.jinja_env,
                    )
                    sent, failed = sent + done, failed + errors
                    if done + errors == 0 or errors:
                        break
                if not made or failed:
                    break
        finally:
            sender.close()
        return sent, failed

    def _run(self) -> None:
        ended = -GATHER_AFTER
        while not self._stop.is_set():
            self.wakeup.clear()
            gather = self.settings.mail_gather
            if gather and _monotonic() - ended < GATHER_AFTER:
                # Woken again right after a round: a burst of logins (new browsers, each its
                # alert). Its next mails join this round instead of one round each — one
                # connection, one claim and one record for them all (a round per mail took
                # more of SQLite's write lock and of the CPU than the logins themselves).
                self._stop.wait(gather)
            try:
                self.run_once()
                wait = next_due_in(self.database)
            except Exception:
                # Database unreachable: try again shortly; nothing is lost.
                log.warning("mail delivery round failed; retrying", exc_info=False)
                wait = 2.0
            ended = _monotonic()
            poll = self.idle_poll
            self.wakeup.wait(timeout=min(wait if wait is not None else poll, poll) or 0.05)
