"""Helpers for the new-device, « Ce n'était pas moi » and notification tests.

Each "browser" is its own Flask test client (its own cookie jar), with a User-Agent and
an address of its own. E-mails are counted twice: in the outbox (exact, at commit) and at
the real SMTP server (what people receive).
"""

from __future__ import annotations

import re
import time
from email.message import EmailMessage
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from authserver.db import get_database
from authserver.models import Device, OutboxMail, SecurityEvent, User
from tests.accounts.queued_jobs import wait_for_mail_jobs
from tests.conftest import Actions, csrf_of
from tests.services import SMTPServer, html_of, text_of

USERNAME = "martin.dupont"
EMAIL = "martin.dupont@entreprise.fr"
ALERT_SUBJECT = "Nouvelle connexion à votre espace France Travail"
BASE_URL = "http://localhost:5000"  # AUTHSERVER_BASE_URL's default in tests

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/131.0.2903.86"

NOT_ME_LINK = re.compile(r"https?://\S+/alerts/not-me/[A-Za-z0-9_\-]+")


def browser(
    app: Flask, smtp: SMTPServer, *, ua: str = CHROME_WINDOWS, ip: str = "127.0.0.1"
) -> Actions:
    """A browser of its own: cookie jar, User-Agent, address."""
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = ua
    client.environ_base["REMOTE_ADDR"] = ip
    return Actions(client, smtp)


def logged_in(client: FlaskClient) -> bool:
    """A live session: /espace (or its onboarding step) rather than the login page."""
    response = client.get("/espace")
    if response.status_code == 200:
        return True
    assert response.status_code in (302, 303), response.status_code
    return urlsplit(response.location).path != "/login"


def logout(actions: Actions) -> None:
    page = actions.client.get("/espace", follow_redirects=True).get_data(as_text=True)
    actions.client.post("/logout", data={"csrf_token": csrf_of(page)})


def login_ok(actions: Actions, username: str = USERNAME) -> None:
    response = actions.login(username)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def queued(app: Flask, kind: str) -> list[OutboxMail]:
    with get_database(app).session_scope() as session:
        return list(
            session.scalars(
                select(OutboxMail).where(OutboxMail.kind == kind).order_by(OutboxMail.id)
            )
        )


def alerts_queued(app: Flask) -> int:
    return len(queued(app, "new_device"))


def security_events(app: Flask, kind: str | None = None) -> list[SecurityEvent]:
    with get_database(app).session_scope() as session:
        statement = select(SecurityEvent).order_by(SecurityEvent.id)
        if kind:
            statement = statement.where(SecurityEvent.kind == kind)
        return list(session.scalars(statement))


def devices_of(app: Flask, username: str = USERNAME) -> list[Device]:
    with get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username_key == username))
        return list(
            session.scalars(select(Device).where(Device.user_id == user_id).order_by(Device.id))
        )


def user_row(app: Flask, username: str = USERNAME) -> User:
    with get_database(app).session_scope() as session:
        user = session.scalar(select(User).where(User.username_key == username))
        assert user is not None
        return user


def wait_delivered(app: Flask, timeout: float = 15.0) -> None:
    """Until the outbox has nothing left to send (reset requests turned into mail first)."""
    wait_for_mail_jobs(app, timeout)
    deadline = time.monotonic() + timeout
    while True:
        with get_database(app).session_scope() as session:
            pending = session.scalar(
                select(func.count()).select_from(OutboxMail).where(OutboxMail.status != "sent")
            )
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{pending} e-mail(s) still not delivered after {timeout} s")
        time.sleep(0.05)


def received(smtp: SMTPServer, subject: str) -> list[EmailMessage]:
    return [m for m in list(smtp.messages) if m["Subject"] == subject]


def received_alerts(app: Flask, smtp: SMTPServer) -> list[EmailMessage]:
    """The new-device alerts the SMTP server got, once the outbox is empty."""
    wait_delivered(app)
    return received(smtp, ALERT_SUBJECT)


def not_me_link(message: EmailMessage) -> str:
    links = NOT_ME_LINK.findall(text_of(message))
    assert len(links) == 1, text_of(message)
    return links[0]


def path_of(url: str) -> str:
    return urlsplit(url).path


def html_links(message: EmailMessage) -> list[str]:
    return re.findall(r'href="([^"]+)"', html_of(message))


def account_with_first_login(app: Flask, smtp: SMTPServer, username: str = USERNAME) -> Actions:
    """A new account and its very first login (which alerts nobody), from its own browser."""
    first = browser(app, smtp, ua=FIREFOX_LINUX, ip="192.0.2.10")
    first.create_active_account(username)
    login_ok(first, username)
    return first
