"""Delivery against a relay that fails and stalls: exactly once, never given up, requeued."""

from __future__ import annotations

import re
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import insert, select

from authserver import settings_of
from authserver.config import Settings, parse_mail_url
from authserver.db import Database, get_database
from authserver.mail import delivery, worker_of
from authserver.mail.delivery import DeliveryWorker, SMTPTransport, deliver_due
from authserver.models import OutboxMail, utcnow
from tests.mail.faulty_smtp import FaultySMTPServer
from tests.sqlite_commits import count_commits

MESSAGE_ID = re.compile(r"outbox-(\d+)")


@pytest.fixture
def relay() -> Iterator[FaultySMTPServer]:
    server = FaultySMTPServer(slow_seconds=0.3, flaky_times=2).start()
    try:
        yield server
    finally:
        server.stop()


def relay_settings(app: Flask, relay: FaultySMTPServer) -> Settings:
    return settings_of(app).with_overrides(mail=parse_mail_url(relay.url))


def queue(database: Database, recipients: list[str], **values: object) -> list[int]:
    """Rows as the outbox writes them (no app request needed); returns their ids."""
    now = utcnow()
    with database.session_scope() as session:
        ids = session.scalars(
            insert(OutboxMail).returning(OutboxMail.id),
            [
                {
                    "created_at": now,
                    "kind": "test",
                    "recipient": recipient,
                    "subject": f"Message {i}",
                    "body_text": f"Bonjour {i}\n",
                    "body_html": None,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    **values,
                }
                for i, recipient in enumerate(recipients)
            ],
        ).all()
    return sorted(ids)


def rows(database: Database) -> dict[int, OutboxMail]:
    with database.session_scope() as session:
        return {row.id: row for row in session.scalars(select(OutboxMail))}


def delivered_ids(relay: FaultySMTPServer) -> Counter[int]:
    found = Counter()
    for message_id, n in relay.message_ids().items():
        match = MESSAGE_ID.search(message_id)
        assert match, message_id
        found[int(match.group(1))] += n
    return found


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- exactly once


def test_two_workers_on_a_failing_and_slow_relay_deliver_each_mail_exactly_once(
    backend_app: Flask, relay: FaultySMTPServer, monkeypatch: pytest.MonkeyPatch
):
    """Two workers with their own connection pools (as two processes), on SQLite and PG.

    The relay is slow for some recipients (0.3 s per mail) and refuses others twice with a
    4xx before accepting them. The lease is scaled down with the sends (1 s here, for 0.3 s
    sends; 60 s for 15 s sends in production): a batch of several slow mails outlives it,
    and a worker's transient failure happens while the other is in the middle of a send.
    """
    app = backend_app
    worker_of(app).stop()
    monkeypatch.setattr(delivery, "LEASE", timedelta(seconds=1))
    settings = relay_settings(app, relay)
    kinds = ["slow", "flaky", "ok", "slow", "greylist", "ok", "slow", "flaky"]
    recipients = [f"{kinds[i % len(kinds)]}{i}@entreprise.fr" for i in range(24)]
    first = get_database(app)
    ids = queue(first, recipients)
    second = Database(first.url)
    workers = [
        DeliveryWorker(app, database, SMTPTransport(settings), settings)
        for database in (first, second)
    ]
    try:
        for worker in workers:
            worker.start()
        wait_until(
            lambda: all(r.status == "sent" for r in rows(first).values()),
            timeout=60,
            what="every row marked sent",
        )
        # A worker that lost a row would send it again within a lease or two.
        time.sleep(1.5)
    finally:
        for worker in workers:
            worker.stop()
        second.dispose()

    assert delivered_ids(relay) == Counter(dict.fromkeys(ids, 1))
    final = rows(first)
    assert all(r.claim_token is None and r.claimed_until is None for r in final.values())
    for row in final.values():
        local = row.recipient.split("@")[0]
        expected = 3 if local.startswith(("flaky", "greylist")) else 1
        assert row.attempts == expected, (row.recipient, row.attempts, row.last_error)
        assert row.last_error is None


def test_one_smtp_connection_per_batch(app: Flask, relay: FaultySMTPServer):
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    queue(database, [f"client{i}@entreprise.fr" for i in range(6)])
    sent, failed = deliver_due(database, SMTPTransport(settings), settings)
    assert (sent, failed) == (6, 0)
    assert relay.connections == 1
    assert len(relay.messages) == 6


def test_a_round_sends_all_its_batches_on_one_connection(app: Flask, relay: FaultySMTPServer):
    """Issue 13: a connection (TCP, banner, EHLO, QUIT) per batch of ten cost the worker and
    the relay more than the mails themselves during a burst of new-browser logins."""
    worker_of(app).stop()
    database = get_database(app)
    queue(database, [f"client{i}@entreprise.fr" for i in range(delivery.BATCH * 2 + 5)])
    worker = DeliveryWorker(
        app, database, SMTPTransport(relay_settings(app, relay)), relay_settings(app, relay)
    )
    assert worker.run_once() == (delivery.BATCH * 2 + 5, 0)
    assert relay.connections == 1
    assert sorted(delivered_ids(relay).values()) == [1] * (delivery.BATCH * 2 + 5)


def test_a_burst_of_mail_goes_in_a_few_rounds_a_lone_mail_at_once(make_app, smtp):
    """One mail after a quiet spell goes at once; the mails of a burst that follows it (a
    new-browser login each) wait for each other and go together (here a whole second, so
    that the test tells both apart on a busy machine; a tenth by default)."""
    app = make_app(AUTHSERVER_MAIL_GATHER_SECONDS="1")
    worker = worker_of(app)
    database = get_database(app)
    rounds: list[int] = []
    real = worker.run_once

    def counted() -> tuple[int, int]:
        done = real()
        if done[0]:
            rounds.append(done[0])
        return done

    worker.run_once = counted  # type: ignore[method-assign]
    # A quiet spell, counted from the end of the worker's first round (at its start, which
    # may still be running now): exactly GATHER_AFTER held the lone mail back on a busy machine.
    time.sleep(delivery.GATHER_AFTER + 0.5)
    started = time.monotonic()
    queue(database, ["seul@entreprise.fr"])
    worker.wakeup.set()
    smtp.wait_for(1)
    assert time.monotonic() - started < 0.9  # not held back
    for i in range(20):
        queue(database, [f"rafale{i}@entreprise.fr"])
        worker.wakeup.set()
        time.sleep(0.01)
    assert len(smtp.wait_for(21)) == 21
    wait_until(lambda: sum(rounds) == 21, 5, "every mail counted")
    assert len(rounds) <= 3  # a round per mail before: 21


def test_a_batch_is_two_write_transactions(app: Flask, smtp):
    """Issue 16: each mail cost two write transactions (its lease renewed, then marked sent)
    besides the batch's claim and release, all queued on SQLite's single write lock with the
    logins: 22 for 10 new-device alerts. Now the claim, and the sends recorded with the
    release; the lease is renewed only when a batch runs long."""
    worker_of(app).stop()
    settings = settings_of(app)
    database = get_database(app)
    ids = queue(database, [f"client{i}@entreprise.fr" for i in range(10)])
    commits = count_commits(app)
    assert deliver_due(database, SMTPTransport(settings), settings) == (10, 0)
    assert commits[0] == 2
    final = rows(database)
    assert all(final[i].status == "sent" and final[i].attempts == 1 for i in ids)
    assert all(final[i].claim_token is None and final[i].sent_at for i in ids)
    assert len(smtp.wait_for(10)) == 10


def test_a_long_batch_renews_its_lease_before_it_runs_out(app: Flask, smtp, monkeypatch):
    """A batch whose sends take longer than a quarter of the lease renews its rows, the sent
    ones too (recorded at the end): another worker can never claim a row this one is about
    to send or has sent."""
    worker_of(app).stop()
    settings = settings_of(app)
    database = get_database(app)
    ids = queue(database, ["a@entreprise.fr", "b@entreprise.fr", "c@entreprise.fr"])
    clock = [1000.0]
    monkeypatch.setattr(delivery, "_monotonic", lambda: clock[0])
    transport = SMTPTransport(settings)
    opened = transport.open

    def slow_open():  # each send "takes" 40 s of the 120 s lease
        session = opened()
        send = session.send

        def slow_send(mail):
            clock[0] += 40
            send(mail)
            # The lease is what another worker sees: never past while this batch runs.
            held = rows(database)
            assert all(held[i].claim_token for i in ids if held[i].status == "pending")

        session.send = slow_send
        return session

    monkeypatch.setattr(transport, "open", slow_open)
    renewals = []
    renew_all = delivery.OUTBOX.renew_all
    monkeypatch.setattr(
        delivery.OUTBOX,
        "renew_all",
        lambda *a, **k: renewals.append(a[1]) or renew_all(*a, **k),
    )
    assert deliver_due(database, transport, settings) == (3, 0)
    assert renewals == [ids, ids]  # before the 2nd and 3rd sends (the sent ones too), not the 1st


def test_a_worker_never_releases_or_marks_a_row_another_worker_holds(app: Flask, smtp):
    """The claim is per holder: releasing and marking sent check the token."""
    worker_of(app).stop()
    database = get_database(app)
    [mail_id] = queue(database, ["a@entreprise.fr"])
    mine, _eager = delivery._claim(database, "token-a", utcnow(), 10)
    assert [m.id for m in mine] == [mail_id]
    assert delivery._claim(database, "token-b", utcnow(), 10) == ([], False)
    delivery.OUTBOX.release(database, "token-b", [mail_id])
    assert delivery.OUTBOX.mark_sent(database, mail_id, "token-b") is False
    row = rows(database)[mail_id]
    assert row.status == "pending" and row.claim_token == "token-a"
    assert delivery.OUTBOX.mark_sent(database, mail_id, "token-a") is True
    assert rows(database)[mail_id].status == "sent"


# --------------------------------------------------------------------------- never given up


def test_transient_failures_are_retried_for_ever_at_the_capped_backoff(app: Flask, smtp):
    """A long SMTP outage (here: already 500 failed attempts) never turns mail into 'failed'."""
    worker_of(app).stop()
    database = get_database(app)
    [mail_id] = queue(database, ["patient@entreprise.fr"], attempts=500)
    settings = settings_of(app)
    smtp.stop()
    before = utcnow()
    assert deliver_due(database, worker_of(app).transport, settings) == (0, 1)
    row = rows(database)[mail_id]
    assert row.status == "pending"
    assert row.attempts == 501 and row.last_error
    assert row.claim_token is None
    wait = (row.next_attempt_at - before).total_seconds()
    assert 0.8 * settings.mail_retry_max - 0.05 <= wait <= 1.2 * settings.mail_retry_max + 0.05

    smtp.start()
    wait_until(
        lambda: deliver_due(database, worker_of(app).transport, settings)[0] == 1,
        timeout=10,
        what="delivery once SMTP is back",
    )
    assert rows(database)[mail_id].status == "sent"
    assert len(smtp.messages) == 1


def test_a_recipient_rejected_for_good_fails_and_the_batch_goes_on(
    app: Flask, relay: FaultySMTPServer
):
    worker_of(app).stop()
    database = get_database(app)
    settings = relay_settings(app, relay)
    ids = queue(database, ["avant@entreprise.fr", "refused@entreprise.fr", "apres@entreprise.fr"])
    assert deliver_due(database, SMTPTransport(settings), settings) == (2, 1)
    final = rows(database)
    assert [final[i].status for i in ids] == ["sent", "failed", "sent"]
    assert "550" in (final[ids[1]].last_error or "")
    assert final[ids[1]].attempts == 1 and final[ids[1]].claim_token is None
    # Failed rows are never picked up again by themselves.
    assert deliver_due(database, SMTPTransport(settings), settings) == (0, 0)


def test_stop_finishes_the_current_mail_and_releases_the_rest(app: Flask, relay: FaultySMTPServer):
    worker_of(app).stop()
    database = get_database(app)
    settings = relay_settings(app, relay)
    ids = queue(database, [f"slow{i}@entreprise.fr" for i in range(5)])
    worker = DeliveryWorker(app, database, SMTPTransport(settings), settings)
    worker.start()
    wait_until(lambda: relay.connections >= 1, timeout=5, what="the first send")
    time.sleep(0.1)  # in the middle of the first (slow) mail
    stopping = threading.Thread(target=worker.stop, kwargs={"timeout": 10})
    stopping.start()
    stopping.join(10)
    assert not stopping.is_alive()
    final = rows(database)
    sent = [i for i in ids if final[i].status == "sent"]
    assert 1 <= len(sent) < len(ids)
    assert delivered_ids(relay) == Counter(dict.fromkeys(sent, 1))
    assert all(
        final[i].claim_token is None and final[i].claimed_until is None
        for i in ids
        if i not in sent
    )


def test_an_accented_local_part_goes_through_a_relay_that_announces_smtputf8(
    app: Flask, relay: FaultySMTPServer
):
    """Sign-up accepts « élise@entreprise.fr »; there is no ASCII form of it, and Flask-Mail
    failed on it at every attempt, for ever. It goes under SMTPUTF8 (RFC 6531) now."""
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    ids = queue(database, ["élise@entreprise.fr", "client@entreprise.fr"])
    assert deliver_due(database, SMTPTransport(settings), settings) == (2, 0)
    assert sorted(str(m["To"]) for m in relay.messages) == [
        "client@entreprise.fr",
        "élise@entreprise.fr",
    ]
    assert sorted(to for _, (to,) in relay.envelopes) == [
        "client@entreprise.fr",
        "élise@entreprise.fr",
    ]
    assert all(rows(database)[i].status == "sent" for i in ids)


def test_an_accented_local_part_a_relay_cannot_carry_fails_for_good_alone(app: Flask):
    """A relay without SMTPUTF8 never will: the row is marked failed (``mail requeue`` once
    it does), not retried for ever, and the rest of the batch goes on the same connection."""
    worker_of(app).stop()
    relay = FaultySMTPServer(smtputf8=False).start()
    try:
        settings = relay_settings(app, relay)
        database = get_database(app)
        accented, plain = queue(database, ["élise@entreprise.fr", "client@entreprise.fr"])
        assert deliver_due(database, SMTPTransport(settings), settings) == (1, 1)
        final = rows(database)
        assert final[accented].status == "failed"
        assert "SMTPNotSupportedError" in (final[accented].last_error or "")
        assert final[plain].status == "sent"
        assert [str(m["To"]) for m in relay.messages] == ["client@entreprise.fr"]
        assert relay.connections == 1
    finally:
        relay.stop()


def test_a_worker_no_commit_wakes_looks_again_within_its_poll(app: Flask, smtp) -> None:
    """``authserver mail deliver`` runs apart from the web workers: their commits cannot
    wake it. It looked again only every 30 s when idle, so every alert and reset e-mail
    queued elsewhere waited up to 30 s; it looks again every ``idle_poll`` seconds (the
    command's ``--poll``, 1 s by default)."""
    worker_of(app).stop()
    database = get_database(app)
    settings = settings_of(app)
    worker = DeliveryWorker(app, database, SMTPTransport(settings), settings)
    worker.idle_poll = 0.3
    worker.start()
    try:
        time.sleep(0.5)  # its first round found nothing: it is idle
        ids = queue(database, ["ailleurs@entreprise.fr"])  # by another process: no wake-up
        wait_until(
            lambda: rows(database)[ids[0]].status == "sent", timeout=3, what="the e-mail sent"
        )
    finally:
        worker.stop()


ENVELOPES = [
    "client@entreprise.fr",
    "prenom.nom+rh@sous-domaine.entreprise.example.fr",
    "Martin_Dupont-2@ENTREPRISE.FR",
    "Espace Entreprise <ne-pas-repondre@entreprise.example.fr>",
    "<deja@entre-chevrons.fr>",
    '"guillemets dans la partie locale"@entreprise.fr',
    "deux..points@entreprise.fr",
    ".point-initial@entreprise.fr",
    "sans-domaine-complet@localhost",
    "rh@xn--boulangerie-lodie-dmb.fr",
    "o'brien@entreprise.fr",
    "",
]


@pytest.mark.parametrize("value", ENVELOPES)
def test_an_envelope_address_is_quoted_as_smtplib_quotes_it(value: str):
    assert delivery.envelope_address(value) == smtplib.quoteaddr(value)


def test_every_plain_address_is_quoted_as_smtplib_quotes_it():
    """Random addresses of the characters the quick path accepts, and a few more: each
    quoted as smtplib quotes it, whichever path it takes."""
    import random

    pick = random.Random(16)
    plain_characters = "abcXYZ0189_+-"
    noise = plain_characters + ".@'\"<> é()[],;:\\"

    def word(characters: str) -> str:
        return "".join(pick.choice(characters) for _ in range(pick.randint(1, 8)))

    plain = 0
    for number in range(3000):
        if number % 2:  # a dot-atom of plain characters, dotted domain
            local = ".".join(word(plain_characters) for _ in range(pick.randint(1, 3)))
            domain = ".".join(word("abz09-") for _ in range(pick.randint(2, 3)))
            value = f"{local}@{domain}"
        else:  # odd characters anywhere, often before a plain domain: the other path
            domain = pick.choice(["entreprise.fr", "a-b.example.fr", word(noise)])
            value = word(noise) + pick.choice(["@", "@", ""]) + domain
        plain += bool(delivery._PLAIN_ADDRESS.fullmatch(value))
        assert delivery.envelope_address(value) == smtplib.quoteaddr(value), value
    assert plain > 300  # the quick path was taken often


def test_the_relay_receives_the_envelope_smtplib_would_send(app: Flask, relay: FaultySMTPServer):
    """MAIL FROM is the sender without its display name and RCPT TO the recipient, both
    quoted once here instead of parsed by smtplib at every e-mail."""
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    recipients = ["client@entreprise.fr", "prenom.nom+rh@sous-domaine.entreprise.example.fr"]
    queue(database, recipients)
    assert deliver_due(database, SMTPTransport(settings), settings) == (2, 0)
    sender = smtplib.quoteaddr(settings.mail_sender)[1:-1]
    assert sorted(relay.envelopes) == sorted((sender, [to]) for to in recipients)
