"""The durable outbox: written with its cause, delivered after SMTP outages, never twice."""

from __future__ import annotations

import html
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from authserver import settings_of
from authserver.accounts.validation import email_key, username_key
from authserver.db import get_database
from authserver.mail import worker_of
from authserver.mail.delivery import backoff, deliver_due
from authserver.mail.outbox import enqueue
from authserver.models import OutboxMail, User
from tests.conftest import Actions, link_in, path_of
from tests.services import text_of


def rows(app) -> list[OutboxMail]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def count(app, model) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def signup_many(app, smtp, n: int, prefix: str = "employeur") -> list[str]:
    actions = Actions(app.test_client(), smtp)
    addresses = []
    for i in range(n):
        username = f"{prefix}{i}"
        response = actions.signup(username)
        assert response.status_code == 302, response.get_data(as_text=True)
        addresses.append(f"{username}@entreprise.fr")
    return addresses


def assert_each_once(smtp, addresses: list[str]) -> None:
    ids = Counter(m["Message-ID"] for m in smtp.messages)
    assert all(ids.values()) and max(ids.values()) == 1, ids
    recipients = Counter(r for _, rcpts in smtp.envelopes for r in rcpts)
    assert recipients == Counter(addresses)


def _user(name: str) -> User:
    return User(
        username=name,
        username_key=username_key(name),
        email=f"{name}@entreprise.fr",
        email_key=email_key(f"{name}@entreprise.fr"),
    )


def _queue_for(user: User) -> None:
    enqueue(
        kind="activation",
        to=user.email,
        subject="Activez votre compte France Travail",
        template="activation",
        user=user,
        link="http://localhost:5000/activate/x",
        hours=72,
    )


# --------------------------------------------------------------------------- transaction


def test_mail_is_committed_with_its_cause_and_dropped_on_rollback(app, smtp):
    from authserver import db

    with app.test_request_context():
        session = db.session()
        user = _user("annule")
        session.add(user)
        _queue_for(user)
        session.flush()
        assert session.scalar(select(func.count()).select_from(OutboxMail)) == 1
        session.rollback()
    assert count(app, OutboxMail) == 0
    assert count(app, User) == 0

    with app.test_request_context():
        session = db.session()
        user = _user("valide")
        session.add(user)
        _queue_for(user)
        session.commit()
    assert count(app, User) == 1
    [message] = smtp.wait_for(1)
    assert message["To"] == "valide@entreprise.fr"
    wait_until(lambda: rows(app)[0].status == "sent", what="the row marked sent")
    [row] = rows(app)
    assert row.attempts == 1 and row.sent_at is not None and row.claimed_until is None


def test_signup_writes_the_account_and_its_mail_together(app, smtp):
    worker_of(app).stop()
    signup_many(app, smtp, 1)
    [row] = rows(app)
    assert row.status == "pending"
    assert row.recipient == "employeur0@entreprise.fr"
    assert row.kind == "activation"
    assert "/activate/" in row.body_text
    assert row.body_html and "/activate/" in row.body_html
    assert count(app, User) == 1


def test_a_failed_signup_queues_nothing(app, smtp):
    actions = Actions(app.test_client(), smtp)
    assert actions.signup("martin.dupont").status_code == 302
    assert actions.signup("Martin.Dupont").status_code == 409
    assert len(rows(app)) == 1


# --------------------------------------------------------------------------- SMTP outage


def test_smtp_down_during_signups_then_everything_delivered_once(app, smtp):
    smtp.stop()
    started = time.monotonic()
    addresses = signup_many(app, smtp, 5)
    # The sign-ups did not wait for SMTP.
    assert time.monotonic() - started < 10

    # Every mail was tried and failed while the server was down; none is lost.
    wait_until(
        lambda: len(rows(app)) == 5 and all(r.attempts >= 1 for r in rows(app)),
        what="a failed attempt for every mail",
    )
    assert all(r.status == "pending" and r.last_error for r in rows(app))
    assert smtp.messages == []

    smtp.start()
    smtp.wait_for(5, timeout=15)
    wait_until(lambda: all(r.status == "sent" for r in rows(app)), what="every row marked sent")
    # One more retry period: nothing arrives twice.
    with pytest.raises(AssertionError):
        smtp.wait_for(6, timeout=settings_of(app).mail_retry_max + 0.3)
    assert_each_once(smtp, addresses)
    assert all(r.attempts >= 2 and r.last_error is None for r in rows(app))

    # The delayed links still work.
    client = app.test_client()
    for message in smtp.messages:
        assert client.get(path_of(link_in(message, "/activate/"))).status_code == 200


@pytest.mark.parametrize(
    ("attempts", "nominal"), [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (5, 1.0), (30, 1.0)]
)
def test_backoff_is_exponential_and_capped(app, attempts, nominal):
    settings = settings_of(app)  # base 0.2 s, max 1 s in these tests
    delays = [backoff(attempts, settings) for _ in range(50)]
    assert all(0.8 * nominal - 1e-9 <= d <= 1.2 * nominal + 1e-9 for d in delays)
    assert len(set(delays)) > 1  # jitter: workers do not retry in lockstep


def test_retries_while_smtp_is_down(app, smtp):
    smtp.stop()
    signup_many(app, smtp, 1)
    seen: dict[int, float] = {}  # attempts -> when first observed
    deadline = time.monotonic() + 15
    while not all(n in seen for n in (1, 2, 3, 4)):
        assert time.monotonic() < deadline, seen
        seen.setdefault(rows(app)[0].attempts, time.monotonic())
        time.sleep(0.01)
    # 0.2 + 0.4 + 0.8 s nominal (±20 %) between the 1st and the 4th tries: exponential,
    # neither hammering the server nor giving up.
    assert 0.9 < seen[4] - seen[1] < 5, seen
    [row] = rows(app)
    assert row.status == "pending"
    assert row.last_error
    smtp.start()
    smtp.wait_for(1, timeout=15)
    wait_until(lambda: rows(app)[0].status == "sent", what="delivery after restart")


# --------------------------------------------------------------------------- two workers


def test_two_workers_deliver_each_mail_once(backend_app, smtp):
    app = backend_app
    worker = worker_of(app)
    worker.stop()
    addresses = signup_many(app, smtp, 12)
    assert all(r.status == "pending" for r in rows(app))

    database = get_database(app)
    settings = settings_of(app)
    barrier = threading.Barrier(2)
    totals: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            sent = 0
            for _ in range(20):
                done, failed = deliver_due(database, worker.transport, settings, limit=3)
                assert failed == 0
                sent += done
                if done == 0 and not any(r.status == "pending" for r in rows(app)):
                    break
            totals.append(sent)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(totals) == 12
    smtp.wait_for(12)
    assert len(smtp.messages) == 12
    assert_each_once(smtp, addresses)
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(app))


# --------------------------------------------------------------------------- console


def test_console_transport_prints_and_keeps_a_dev_mailbox(make_app, smtp, capsys):
    app = make_app(AUTHSERVER_MAIL_URL="console")
    client = app.test_client()
    actions = Actions(client, smtp)
    assert actions.signup().status_code == 302
    wait_until(lambda: rows(app) and rows(app)[0].status == "sent", what="console delivery")
    out = capsys.readouterr().out
    assert "martin.dupont@entreprise.fr" in out
    assert "Activez votre compte" in out
    [row] = rows(app)
    link = [line for line in out.splitlines() if "/activate/" in line]
    assert len(link) == 1
    assert smtp.messages == []  # nothing went to SMTP

    mailbox = client.get("/dev/mailbox")
    assert mailbox.status_code == 200
    listing = html.unescape(mailbox.get_data(as_text=True))
    assert "Activez votre compte" in listing
    # Issue 12: its state in French, not the outbox's code.
    assert "<td>Envoyé</td>" in listing and "<td>sent</td>" not in listing
    one = client.get(f"/dev/mailbox/{row.id}")
    assert one.status_code == 200
    assert "— Envoyé</p>" in html.unescape(one.get_data(as_text=True))
    assert client.get(path_of(link[0].strip())).status_code == 200


def test_dev_mailbox_is_hidden_with_real_smtp(app, client, actions, smtp):
    assert actions.signup().status_code == 302
    smtp.wait_for(1)
    assert client.get("/dev/mailbox").status_code == 404
    assert client.get(f"/dev/mailbox/{rows(app)[0].id}").status_code == 404


def test_mail_has_text_and_html_parts(app, actions, smtp):
    assert actions.signup().status_code == 302
    [message] = smtp.wait_for(1)
    assert message.get_body(("plain",)) is not None
    assert message.get_body(("html",)) is not None
    assert "/activate/" in text_of(message)
    assert message["Message-ID"]
    assert "no-reply@localhost" in message["From"]
