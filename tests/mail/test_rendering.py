"""Mail queued as its facts (the new-device alert) and put into words by its deliverer
(mail/rendering.py, mail/facts.py): the same words as rendered at once, a context that only
holds plain values, no claim takes such a row before its words exist (so no deliverer, of
this version or of an earlier one, sends it empty), a mail that cannot be rendered waits
without holding the others, and the development mailbox shows the words."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import create_engine, insert, select, text

from authserver.db import get_database
from authserver.mail import facts, worker_of
from authserver.mail.delivery import DeliveryWorker, SMTPTransport, deliver_due, next_due_in
from authserver.mail.facts import render_due
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


def test_no_claim_takes_a_mail_before_its_words_exist(app: Flask, relay):  # noqa: F811
    """The claim is the previous version's too (``status = 'pending'``): during a rolling
    deploy, its deliverers would have sent a row queued as its facts with an empty body."""
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    now = utcnow()
    row = alert_row(now, to="b@entreprise.fr")
    mail_id = queue_row(app, row)
    assert row["status"] == FACTS
    assert deliver_due(database, SMTPTransport(settings), settings) == (0, 0)
    assert relay.messages == []
    assert render_due(database, app.jinja_env, lambda attempts: 1.0) == 1
    with database.session_scope() as session:
        ready = session.get(OutboxMail, mail_id)
        assert ready is not None and ready.status == "pending"
        assert (ready.template, ready.context) == (None, None)  # its words, not its facts
        assert "Firefox 133, Linux" in str(ready.body_text)
    assert deliver_due(database, SMTPTransport(settings), settings) == (1, 0)
    assert "Firefox 133, Linux" in text_of(relay.messages[0])


def test_a_mail_that_cannot_be_put_into_words_waits_and_the_others_go(app: Flask):
    worker_of(app).stop()
    database = get_database(app)
    now = utcnow()
    fields = {"kind": "new_device", "subject": SUBJECT}
    broken = queue_row(
        app, unrendered_row(now, to="a@entreprise.fr", template="gone", **fields, user={})
    )
    good = queue_row(app, alert_row(now, to="b@entreprise.fr"))
    waits: list[int] = []
    retry_in = lambda attempts: waits.append(attempts) or 60.0  # noqa: E731
    assert render_due(database, app.jinja_env, retry_in, now=now) == 1
    assert waits == [1]
    with database.session_scope() as session:
        rows = {row.id: row for row in session.scalars(select(OutboxMail))}
        assert rows[good].status == "pending"
        waiting = rows[broken]
        assert (waiting.status, waiting.attempts) == (FACTS, 1)
        assert waiting.next_attempt_at == now + timedelta(seconds=60)
        assert waiting.last_error == "TemplateNotFound (mise en forme)"
    # Not due again before its wait is over; then tried again, with a longer wait.
    assert render_due(database, app.jinja_env, retry_in, now=now + timedelta(seconds=59)) == 0
    assert render_due(database, app.jinja_env, retry_in, now=now + timedelta(seconds=61)) == 0
    assert waits == [1, 2]


def test_a_peak_of_alerts_goes_in_one_round_a_batch_at_a_time(app: Flask, relay):  # noqa: F811
    """A peak of new-browser logins leaves more alerts than one rendering batch. The round
    renders and sends batch after batch; it used to render one batch per look of the
    deliverer (a second under ``serve``, 30 s in a web process): 3,000 alerts took 19 s."""
    worker_of(app).stop()
    settings = relay_settings(app, relay)
    database = get_database(app)
    now = utcnow()
    count = facts.BATCH * 2 + 7
    with database.session_scope() as session:
        rows = [alert_row(now, to=f"client{i}@entreprise.fr") for i in range(count)]
        session.execute(insert(OutboxMail), rows)
    worker = DeliveryWorker(app, database, SMTPTransport(settings), settings)
    worker.add_producer(partial(render_due, database, app.jinja_env, lambda attempts: 1.0))
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
    row = alert_row(now)
    try:
        with engine.begin() as connection:
            connection.execute(insert(OutboxMail), [row])
        with pytest.raises(RuntimeError, match="deliver them first"):
            command.downgrade(alembic_config(url), "0019")
        with engine.begin() as connection:  # as facts.render_due leaves it
            connection.execute(
                text(
                    "UPDATE outbox_mails SET status = 'pending', body_text = 'Bonjour',"
                    " template = NULL, context = NULL"
                )
            )
        command.downgrade(alembic_config(url), "0019")
        with engine.connect() as connection:
            (body,) = connection.execute(text("SELECT body_text FROM outbox_mails")).one()
        assert body == "Bonjour"
    finally:
        engine.dispose()
