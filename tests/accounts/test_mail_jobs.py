"""Reset and activation requests do the same work whatever was typed (issue 11, timing).

Looking the account up, issuing a token and rendering an e-mail took measurably longer for a
real account than for an unknown one. The request now only queues one job, the same for any
input; the mail worker resolves the account and sends the e-mail (or nothing) later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select

from authserver import throttle as throttle_module
from authserver.db import get_database
from authserver.mail import worker_of
from authserver.models import OutboxMail
from tests.accounts.queued_jobs import pending_jobs, wait_for_mail_jobs
from tests.conftest import Actions, csrf_of, fresh_pg_url, link_in, path_of
from tests.services import text_of


def request_statements(app: Flask, action: Callable[[], Any]) -> list[str]:
    """The SQL the request itself runs (the test client runs it in this thread; the mail
    worker's statements, on its own thread, are left out)."""
    engine = get_database(app).engine
    me = threading.get_ident()
    seen: list[str] = []

    def listener(_conn, _cursor, statement, _params, _context, _many) -> None:
        if threading.get_ident() == me:
            seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return seen


def post_form(app: Flask, path: str, form_page: str, **fields: str) -> Callable[[], Any]:
    """A fresh browser's form POST, ready to run (the form page is fetched now)."""
    client = app.test_client()
    csrf = csrf_of(client.get(form_page).get_data(as_text=True))

    def send() -> Any:
        response = client.post(path, data={"csrf_token": csrf, **fields})
        assert response.status_code in (200, 302), response.status_code
        return response

    return send


@pytest.fixture
def accounts(app: Flask, smtp, monkeypatch) -> Flask:
    """martin.dupont is active, paul.martin never activated; their mails already received."""
    # The throttle's occasional sweep of closed windows (1 % of calls) is an extra statement
    # unrelated to what was typed: off, so that the comparison is exact.
    monkeypatch.setattr(throttle_module, "PURGE_PROBABILITY", 0.0)
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account("martin.dupont")
    assert actions.signup("paul.martin").status_code == 302
    smtp.wait_for(2)
    return app


FORMS = {
    "reset by identifiant": ("/password/forgot", "/password/forgot", "username", "martin.dupont"),
    "reset by e-mail": (
        "/password/forgot",
        "/password/forgot",
        "email",
        "martin.dupont@entreprise.fr",
    ),
    "resend by identifiant": ("/activate/resend", "/activate/resend", "username", "paul.martin"),
    "resend by e-mail": (
        "/activate/resend",
        "/activate/resend",
        "email",
        "paul.martin@entreprise.fr",
    ),
    "resend from login": ("/activate/resend-from-login", "/login", "username", "paul.martin"),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_the_request_runs_the_same_statements_for_a_real_and_an_unknown_account(
    accounts, smtp, form
):
    app = accounts
    path, page, field, real = form
    unknown = "personne.inconnue" if field == "username" else "personne@inconnue.fr"
    received = len(smtp.messages)

    for_real = request_statements(app, post_form(app, path, page, **{field: real}))
    for_unknown = request_statements(app, post_form(app, path, page, **{field: unknown}))
    assert for_real == for_unknown
    assert not any("FROM users" in statement for statement in for_real)

    # ... and the real account still gets its e-mail, delivered to the SMTP server.
    [message] = smtp.wait_for(received + 1)[received:]
    expected = "/password/reset/" if path == "/password/forgot" else "/activate/"
    response = app.test_client().get(path_of(link_in(message, expected)))
    assert response.status_code == 200
    wait_for_mail_jobs(app)
    assert len(smtp.messages) == received + 1  # nothing for the unknown one


def test_the_job_keeps_only_the_lookup_keys_and_is_gone_once_processed(make_app, smtp, caplog):
    """With the worker off (``authserver mail deliver`` elsewhere): the job waits, holding
    the lookup keys and never what was typed; one delivery round sends and removes it."""
    app = make_app(AUTHSERVER_MAIL_WORKER="0")
    actions = Actions(app.test_client(), smtp)
    assert actions.signup("martin.dupont").status_code == 302
    worker_of(app).run_once()
    actions.activate(1)

    post_form(app, "/password/forgot", "/password/forgot", username="  Martin.DUPONT ")()
    post_form(app, "/password/forgot", "/password/forgot", email="Quelqu.Un@Ailleurs.FR")()
    jobs = pending_jobs(app)
    assert [(job.username_key, job.email_key) for job in jobs] == [
        ("martin.dupont", None),
        (None, "quelqu.un@ailleurs.fr"),
    ]
    with get_database(app).session_scope() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMail)) == 1  # activation

    caplog.clear()  # what the sign-up and activation logged (the account, by design)
    with caplog.at_level(logging.DEBUG, logger="authserver"):  # ours, not the SMTP server's
        sent, failed = worker_of(app).run_once()
    assert (sent, failed) == (1, 0)
    assert pending_jobs(app) == []
    assert "/password/reset/" in text_of(smtp.wait_for(2)[1])
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("authserver"))
    logged = logged.lower()
    assert "martin.dupont" not in logged and "quelqu.un" not in logged


def test_the_dev_mailbox_shows_the_mail_and_never_the_request(make_app, smtp):
    app = make_app(AUTHSERVER_MAIL_URL="console", AUTHSERVER_MAIL_WORKER="0")
    actions = Actions(app.test_client(), smtp)
    assert actions.signup("martin.dupont").status_code == 302
    post_form(app, "/activate/resend", "/activate/resend", username="martin.dupont")()
    post_form(app, "/activate/resend", "/activate/resend", email="secret.tape@ailleurs.fr")()

    def mailbox() -> str:
        return app.test_client().get("/dev/mailbox").get_data(as_text=True)

    assert mailbox().count("Activez votre compte") == 1  # the sign-up's, sent in its request
    assert "secret.tape" not in mailbox()
    worker_of(app).run_once()
    page = mailbox()
    assert page.count("Activez votre compte") == 2
    assert "secret.tape" not in page
    assert pending_jobs(app) == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def test_a_job_for_another_worker_is_sent_once(request, make_app, smtp, backend):
    """Two delivery processes on one database: each job is handled by one of them."""
    url = None
    if backend == "pg":
        postgres = request.getfixturevalue("postgres")
        url = fresh_pg_url(postgres, request.getfixturevalue("pg_template"))
    app = make_app(url, AUTHSERVER_MAIL_WORKER="0")
    actions = Actions(app.test_client(), smtp)
    assert actions.signup("paul.martin").status_code == 302
    for _ in range(3):
        post_form(app, "/activate/resend", "/activate/resend", username="paul.martin")()
    other = make_app(get_database(app).url, AUTHSERVER_MAIL_WORKER="0")
    rounds = [threading.Thread(target=worker_of(a).run_once) for a in (app, other, app)]
    for thread in rounds:
        thread.start()
    for thread in rounds:
        thread.join()
    worker_of(app).run_once()
    assert pending_jobs(app) == []
    activations = [m for m in smtp.wait_for(4) if "/activate/" in text_of(m)]
    assert len(activations) == 4
    with pytest.raises(AssertionError):
        smtp.wait_for(5, timeout=0.5)
