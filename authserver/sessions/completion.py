"""The views' side of a successful login: the facts read from the request and the ORM,
handed to the login core (login_core.py), which decides and writes the device, the alert,
the session and the login event for every entry point (the passkey login fast path too).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from authserver import db
from authserver.alerts import devices
from authserver.alerts.notify import Site
from authserver.establishments.service import latest_certification
from authserver.mail.outbox import wake_after_commit
from authserver.models import Membership, User, utcnow
from authserver.sessions import login_core
from authserver.sessions.landing import STAFF_TOOLS
from authserver.sessions.login import start_session
from authserver.sessions.login_core import AMR, Browser
from authserver.web import client_ip, settings, user_agent

__all__ = ["AMR", "complete_login", "landing_url", "safe_next"]


def safe_next(target: str | None) -> str | None:
    """Only local paths: never send the user to another site after login."""
    if not target or len(target) > 2000:
        return None
    # Before urlsplit: it raises ValueError on some hosts (« //[ »), never on a path.
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    if "\\" in target or not target.isprintable():
        return None
    return target


class _SessionWriter:
    """The login core's statements on the request's ORM session (login_core.Writer)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def insert(self, statement: ClauseElement, row: dict[str, Any]) -> int:
        return int(self.session.execute(statement, row).scalar_one())

    def execute(self, statement: ClauseElement, row: dict[str, Any]) -> None:
        self.session.execute(statement, row)

    def mail_queued(self) -> None:
        wake_after_commit(self.session)

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()  # the ORM session sends each statement as it comes


def site() -> Site:
    """The alert e-mail's view of the app, for a view (its links as url_for writes them)."""
    return Site(base_url=settings().base_url, build=url_for)


def complete_login(
    user: User, *, method: str, next_url: str | None = None, recovery: bool = False
) -> str:
    """Open the session and record the login; return where to send the browser.

    The facts are read here, the rest is the login core's (login_core.py). The caller
    commits (one short write transaction for the whole login); the log lines follow it.
    """
    session = db.session()
    account = _account(user)
    token = devices.browser_token()
    browser = Browser(
        ip=client_ip(),
        agent=user_agent(),
        device_cookie=request.cookies.get(devices.COOKIE_NAME),
        device_token=token,
    )
    known, has_devices = devices.read_known(session, user.id, token)
    decision = login_core.decide(
        method, account, known=known, account_has_devices=has_devices, recovery=recovery
    )
    plan = login_core.plan_login(
        site(),
        method=method,
        account=account,
        browser=browser,
        known=known,
        decision=decision,
        secret_key=current_app.config["SECRET_KEY"],
        now=utcnow(),
    )
    written = login_core.write_login(
        _SessionWriter(session),
        plan,
        lambda device_id: start_session(user, method=method, amr=decision.amr, device_id=device_id),
    )
    g.new_device_cookie = written.device_cookie
    login_core.announce(written, user.username)
    return safe_next(next_url) or url_for(decision.endpoint)


def _account(user: User) -> login_core.Account:
    status = None
    if user.role not in STAFF_TOOLS:
        status = db.session().scalar(select(Membership.status).where(Membership.user_id == user.id))
    return login_core.Account(
        user_id=user.id,
        username=user.username,
        email=user.email,
        role=user.role,
        membership_status=status,
        certified=user.certified_at is not None,
        certification_asked=lambda: latest_certification(user),
    )


def landing_url(user: User) -> str:
    """Where ``user`` lands when nothing asked for a page (``landing.landing_endpoint``), its
    inputs read here: none for staff, one indexed read of one column for an employer."""
    return url_for(login_core.landing(_account(user)))
