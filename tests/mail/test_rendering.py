"""Mail queued as its facts (the new-device alert) and put into words by its deliverer at
its send (mail/rendering.py, mail/delivery.py): the same words as rendered at once, a context
that only holds plain values, only a claim that can word such a row takes it (so no
deliverer of an earlier version sends it empty), its words are never written back, a mail
that cannot be rendered waits without holding the others, and the development mailbox
shows the words."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import create_engine, insert, select, text

from authserver import settings_of
from authserver.db import get_database
from authserver.mail import worker_of
from authserver.mail.delivery import (
    DeliveryWorker,
    SMTPTransport,
    deliver_due,
    next_due_in,
    requeue_failed,
)
from authserver.mail.outbox import mail_row
from authserver.mail.rendering import (
    FACTS,
    bodies,
    dump_context,
    load_context,
    unrendered_row,
)
from authserver.migrate import alembic_config, upgrade
from authserver.models import OutboxMail, utcnow
from tests.mail.test_delivery import relay, relay_settings  # noqa: F401 (fixture)
from tests.services import text_of
from tests.sqlite_commits import count_commits

SUBJECT = "Nouvelle connexion à votre espace France Travail"


def alert_facts(now: datetime) -> dict[str, object]:
    return {
        "user": {"username": "martin.dupont"},
        "when": now,
        "browser": "Firefox 133",
        "system": "Linux",
        "ip": "192.0.2.1",
        "method": "mot de passe",
        "recovery": False,
        "not_me_link": "https://pro.example.fr/alerts/not-me/" + "A" * 43,
        "security_link": "https://pro.example.fr/securite",
        "forgot_link": "https://pro.example.fr/password/forgot",
    }


def alert_row(now: datetime, to: str = "martin.dupont@entreprise.fr") -> dict[str, object]:
    """The new-device alert's row, as a login queues it."""
    return unrendered_row(
        now, kind="new_device", to=to, subject=SUBJECT, template="new_device", **alert_facts(now)
    )


def queue_row(app: Flask, row: dict[str, object]) -> int:
    with get_database(app).session_scope() as session:
        return int(session.scalar(insert(OutboxMail).returning(OutboxMail.id), [row]))


@pytest.mark.parametrize("recovery", [False, True])
def test_the_deliverers_words_are_the_ones_rendered_at_once(app: Flask, recovery: bool):
    now = utcnow()
    facts = {**alert_facts(now), "recovery": recovery}
    fields = {"kind": "new_device", "to": "martin.dupont@entreprise.fr", "subject": SUBJECT}
    at_once = mail_row(app.jinja_env, now, template="new_device", **fields, **facts)
    later = unrendered_row(now, template="new_device", **fields, **facts)
    assert set(later) == set(at_once)  # one INSERT for both forms
    assert (later["body_text"], later["body_html"]) == (None, None)
    assert len(str(later["context"])) < 1000 < len(str(at_once["body_text"]))
    words = bodies(app.jinja_env, SUBJECT, None, None, "new_device", str(later["context"]))
    assert words == (at_once["body_text"], at_once["body_html"])
    assert "Date : " in words[0] and "Firefox 133, Linux" in words[0]


def test_a_context_holds_plain_values_and_datetimes_only():
    moment = datetime(2026, 7, 14, 8, 5, 3, 120, tzinfo=UTC)
    facts = {"when": moment, "n": 3, "s": "Élise « ok »", "l": [1, "a"], "d": {"b": True}}
    again = load_context(dump_context(facts))
    assert again == facts and isinstance(again["when"], datetime)
    assert again["when"] - moment == timedelta(0)
    with pytest.raises(TypeError):
        dump_context({"user": object()})  # an account object would not survive the queue
    with pytest.raises(ValueError):
        load_context("[1, 2]")


def test_a_claim_without_templates_never_takes_a_mail_queued_as_its_facts(
    app: Flask,
    relay,  # noqa: F811
):
    """The previous versions' claim (``status = 'pending'``): during a rolling deploy, their
    deliverers would have sent a row queued as its facts with an empty body."""
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    row = alert_row(utcnow(), to="b@entreprise.fr")
    mail_id = queue_row(app, row)
    assert row["status"] == FACTS
    assert deliver_due(database, SMTPTransport(settings), settings) == (0, 0)
    assert relay.messages == []
    with database.session_scope() as session:
        waiting = session.get(OutboxMail, mail_id)
        assert waiting is not None and (waiting.status, waiting.claim_token) == (FACTS, None)


def test_the_deliverer_words_the_alert_at_its_send_and_never_writes_the_words(
    app: Flask,
    smtp,
):
    """Two write transactions for a batch of alerts, as for any batch: the claim, and the
    sends recorded. The words were written back first, in a transaction of their own
    (about 5 KB per alert under SQLite's one write lock, beside the logins)."""
    worker_of(app).stop()
    settings = settings_of(app)
    database = get_database(app)
    now = utcnow()
    ids = [queue_row(app, alert_row(now, to=f"client{i}@entreprise.fr")) for i in range(10)]
    commits = count_commits(app)
    sent = deliver_due(database, SMTPTransport(settings), settings, templates=app.jinja_env)
    assert sent == (10, 0)
    assert commits[0] == 2
    messages = smtp.wait_for(10)
    assert all("Navigateur et système : Firefox 133, Linux" in text_of(m) for m in messages)
    with database.session_scope() as session:
        rows = session.scalars(select(OutboxMail).where(OutboxMail.id.in_(ids))).all()
        assert {(row.status, row.body_text, row.body_html) for row in rows} == {
            ("sent", None, None)
        }
        assert all(row.template == "new_device" and row.context for row in rows)


def test_mail_queued_with_its_words_goes_before_the_alerts(app: Flask, smtp):
    worker_of(app).stop()
    settings = settings_of(app)
    database = get_database(app)
    now = utcnow()
    earlier = now - timedelta(seconds=60)
    alerts = [queue_row(app, alert_row(earlier, to=f"alerte{i}@entreprise.fr")) for i in range(8)]
    reset = mail_row(  # queued after them
        app.jinja_env,
        now,
        kind="reset",
        to="reset@entreprise.fr",
        subject="Réinitialisation",
        template="new_device",
        **alert_facts(now),
    )
    queue_row(app, reset)
    transport = SMTPTransport(settings)
    assert deliver_due(database, transport, settings, limit=5, templates=app.jinja_env) == (5, 0)
    first = smtp.wait_for(5)
    assert [m["To"] for m in first][:1] == ["reset@entreprise.fr"]
    assert deliver_due(database, transport, settings, limit=5, templates=app.jinja_env) == (4, 0)
    assert len(smtp.wait_for(9)) == 9 and len(alerts) == 8


def test_a_mail_that_cannot_be_put_into_words_waits_and_the_others_go(app: Flask, smtp):
    worker_of(app).stop()
    settings = settings_of(app)
    database = get_database(app)
    now = utcnow()
    fields = {"kind": "new_device", "subject": SUBJECT}
    broken = queue_row(
        app, unrendered_row(now, to="a@entreprise.fr", template="gone", **fields, user={})
    )
    good = queue_row(app, alert_row(now, to="b@entreprise.fr"))
    transport = SMTPTransport(settings)
    assert deliver_due(database, transport, settings, templates=app.jinja_env) == (1, 1)
    assert [m["To"] for m in smtp.wait_for(1)] == ["b@entreprise.fr"]
    with database.session_scope() as session:
        rows = {row.id: row for row in session.scalars(select(OutboxMail))}
        assert rows[good].status == "sent"
        waiting = rows[broken]
        assert (waiting.status, waiting.attempts, waiting.claim_token) == (FACTS, 1, None)
        assert waiting.last_error == "TemplateNotFound (mise en forme)"
        wait = (waiting.next_attempt_at - utcnow()).total_seconds()
        assert 0 < wait <= settings.mail_retry_base * 1.2
    # Not due again before its wait is over: nothing is claimed meanwhile.
    assert deliver_due(database, transport, settings, templates=app.jinja_env) == (0, 0)


def test_an_alert_refused_for_good_and_requeued_waits_as_its_facts_again(
    app: Flask,
    relay,  # noqa: F811
):
    """Made ``pending`` by ``mail requeue``, a row without words would have been sent empty
    (and by any deliverer, an earlier version's too)."""
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    mail_id = queue_row(app, alert_row(utcnow(), to="refused@entreprise.fr"))
    transport = SMTPTransport(settings)
    assert deliver_due(database, transport, settings, templates=app.jinja_env) == (0, 1)
    with database.session_scope() as session:
        row = session.get(OutboxMail, mail_id)
        assert row is not None and row.status == "failed" and "550" in str(row.last_error)
    assert requeue_failed(database) == 1
    with database.session_scope() as session:
        row = session.get(OutboxMail, mail_id)
        assert row is not None and (row.status, row.body_text) == (FACTS, None)
    assert deliver_due(database, transport, settings) == (0, 0)  # a claim that cannot word it


def test_a_peak_of_alerts_goes_in_one_round_a_batch_at_a_time(app: Flask, relay):  # noqa: F811
    """A peak of new-browser logins leaves far more alerts than one batch: the round sends
    batch after batch until none is due (it used to word one batch of 200 per look of the
    deliverer, a second under ``serve``, 30 s in a web process: 3,000 alerts took 19 s)."""
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    now = utcnow()
    count = 407
    with database.session_scope() as session:
        rows = [alert_row(now, to=f"client{i}@entreprise.fr") for i in range(count)]
        session.execute(insert(OutboxMail), rows)
    worker = DeliveryWorker(app, database, SMTPTransport(settings), settings)
    assert worker.run_once() == (count, 0)
    assert len(relay.messages) == count
    assert next_due_in(database) is None


def test_the_deliverer_looks_again_when_an_alert_is_due_for_its_words(app: Flask):
    """A row that could not be put into words is tried again at its time, not at the next
    idle look (30 s in a web process)."""
    worker_of(app).stop()
    database = get_database(app)
    now = utcnow()
    queue_row(app, {**alert_row(now), "next_attempt_at": now + timedelta(seconds=20)})
    wait = next_due_in(database)
    assert wait is not None and 15 < wait <= 20


def test_a_round_of_the_deliverer_renders_and_sends_the_alert(make_app, smtp):
    app = make_app()
    now = utcnow()
    queue_row(app, alert_row(now))
    worker_of(app).notify()  # as the login's commit does
    (message,) = smtp.wait_for(1)
    assert "Navigateur et système : Firefox 133, Linux" in text_of(message)


def test_the_development_mailbox_shows_the_words(make_app):
    app = make_app(AUTHSERVER_MAIL_URL="console", AUTHSERVER_MAIL_WORKER="0")
    now = utcnow()
    mail_id = queue_row(app, alert_row(now))
    page = app.test_client().get(f"/dev/mailbox/{mail_id}")
    assert page.status_code == 200
    text = html.unescape(page.get_data(as_text=True))
    assert "Navigateur et système : Firefox 133, Linux" in text
    assert "/alerts/not-me/" + "A" * 43 in text


def test_downgrading_refuses_while_a_mail_waits_for_its_words(tmp_path):
    url = f"sqlite:///{tmp_path / 'down.db'}"
    upgrade(url)
    engine = create_engine(url)
    now = utcnow()
    try:
        with engine.begin() as connection:
            connection.execute(insert(OutboxMail), [alert_row(now), alert_row(now)])
            # Sent, or refused for good (« mail requeue » would make it pending, wordless).
            connection.execute(text("UPDATE outbox_mails SET status = 'sent' WHERE id = 1"))
            connection.execute(text("UPDATE outbox_mails SET status = 'failed' WHERE id = 2"))
        with pytest.raises(RuntimeError, match="deliver them first"):
            command.downgrade(alembic_config(url), "0019")
        with engine.begin() as connection:  # as an earlier deliverer left it, worded
            connection.execute(
                text(
                    "UPDATE outbox_mails SET status = 'pending', body_text = 'Bonjour',"
                    " template = NULL, context = NULL WHERE id = 2"
                )
            )
        command.downgrade(alembic_config(url), "0019")
        with engine.connect() as connection:
            bodies_left = connection.execute(
                text("SELECT status, body_text FROM outbox_mails ORDER BY id")
            ).all()
        assert [tuple(row) for row in bodies_left] == [("sent", ""), ("pending", "Bonjour")]
    finally:
        engine.dispose()
