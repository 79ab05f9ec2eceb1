"""One login core: what a successful login does, decided and written from explicit facts.

Every way in — the password view, the passkey view, the passkey login fast path
(webauthn/fastpath.py) — reads the facts of a login its own way (the ORM, or one prepared
statement), asks ``decide``, has ``plan_login`` build every row before any write lock is
taken, and runs them with ``write_login`` through a ``Writer`` of its own (an ORM session,
or a driver cursor). So the rules (may this login
proceed, is this browser new, does it alert, where does it land) and the rows a login leaves
(device, alert e-mail, security event, « pas moi » link, session, login event) are stated
here once: a rule or a side effect added here is applied by every entry point, and
tests/sessions/test_login_equivalence.py compares the whole database after the same
logins answered both ways.

No Flask and no request here: the caller gives the client's address, user agent, cookies
and the time.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.sql import ClauseElement

from authserver.accounts import tokens
from authserver.alerts import devices, events
from authserver.alerts.notify import SECURITY_EVENT, NewDeviceAlert, Site, new_device_alert
from authserver.alerts.policy import RECOVERY, DeviceVerdict, judge_device
from authserver.mail import outbox
from authserver.sessions.landing import landing_endpoint

AMR = {"password": ["pwd"], "passkey": ["hwk", "user"]}


def may_log_in(*, activated: bool, locked: bool) -> bool:
    """An account logs in once activated from its e-mail, and never while locked."""
    return activated and not locked


@dataclass(frozen=True)
class Account:
    """What a login reads about the account."""

    user_id: int
    username: str
    email: str
    role: str
    membership_status: str | None  # the employer's membership's; None: no establishment
    certified: bool
    certification_asked: Callable[[], object | None]  # run only when the landing needs it


@dataclass(frozen=True)
class Browser:
    """What the request says about the browser."""

    ip: str
    agent: str
    device_cookie: str | None  # the device cookie as sent
    device_token: str | None  # the random id in it, if the cookie is genuine


@dataclass(frozen=True)
class LoginDecision:
    device: DeviceVerdict
    endpoint: str  # where the login lands when no ``next`` asked for a page
    amr: list[str]


def decide(
    method: str,
    account: Account,
    *,
    known: devices.KnownDevice | None,
    account_has_devices: bool,
    recovery: bool = False,
) -> LoginDecision:
    """What a successful login of ``account`` from this browser does (``recovery``: the
    login that ends « J'ai perdu ma clé d'accès »)."""
    return LoginDecision(
        device=judge_device(
            known=known is not None, account_has_devices=account_has_devices, recovery=recovery
        ),
        endpoint=landing(account),
        amr=AMR[method],
    )


def offer_due(
    *, refused: bool, after: datetime | None, passkeys: Callable[[], int], now: datetime
) -> bool:
    """Offer a passkey after a password login: none yet, not refused, not postponed (the
    view and the password login fast path ask here). ``passkeys`` counts the account's,
    only asked when the rest allows the offer."""
    if refused or (after is not None and after > now):
        return False
    return passkeys() == 0


def landing(account: Account) -> str:
    """The endpoint ``account`` lands on when nothing asked for a page (landing.py)."""
    return landing_endpoint(
        role=account.role,
        membership_status=account.membership_status,
        certified=account.certified,
        certification_asked=account.certification_asked,
    )


class Writer(Protocol):
    """Runs the login's statements in the caller's one transaction."""

    def insert(self, statement: ClauseElement, row: dict[str, Any]) -> int:
        """Run an INSERT … RETURNING id; return the id."""

    def execute(self, statement: ClauseElement, row: dict[str, Any]) -> None: ...

    def mail_queued(self) -> None:
        """Wake the mail worker once the transaction commits."""

    def batch(self) -> AbstractContextManager[None]:
        """Statements sent together (results unread: no RETURNING, no row count)."""


@dataclass(frozen=True)
class Written:
    device_id: int
    device_cookie: str  # the device cookie to send back (its lifetime renewed)
    session_token: str
    login_row: dict[str, Any]  # events.announce_login once committed
    alert: dict[str, Any] | None  # events.emit("new_device_alert", …) once committed


@dataclass(frozen=True)
class LoginPlan:
    """Every row of a login, built before its write transaction begins: the rendering of the
    alert e-mail and the rest of the Python work never hold the database's write lock (on
    SQLite, one for the whole server). Only the new device's id is put in at write time."""

    method: str
    account: Account
    browser: Browser
    decision: LoginDecision
    device_id: int | None  # a known device's
    touch: dict[str, Any] | None  # devices.TOUCH values, when due
    device_row: dict[str, Any] | None  # devices.INSERT, for a new device
    device_cookie: str  # the device cookie to send back (its lifetime renewed)
    alert: NewDeviceAlert | None
    now: datetime


def plan_login(
    site: Site,
    *,
    method: str,
    account: Account,
    browser: Browser,
    known: devices.KnownDevice | None,
    decision: LoginDecision,
    secret_key: str,
    now: datetime,
) -> LoginPlan:
    """The rows of a successful login: the device (touched, at most once a minute, or new),
    the alert (the « pas moi » link, the e-mail, the security event) and what the login event
    and the session need."""
    touch = device_row = alert = None
    if known is not None:
        assert browser.device_token is not None and browser.device_cookie is not None
        # Kept as sent when the current key signed it (the usual case: a cached check);
        # signed anew when a rotated-out key did, so that the fallback can be retired.
        device_cookie = devices.current_cookie(
            browser.device_cookie, browser.device_token, secret_key
        )
        if devices.touch_due(known.last_ip, known.last_seen_at, browser.ip, now):
            touch = {"pk": known.id, "now": now, "ip": browser.ip}
    else:
        # A genuine cookie of another account's browser keeps its id: one browser, one id.
        token = browser.device_token or devices.new_token()
        device_cookie = devices.cookie_value(token, secret_key)
        device_row = devices.new_device_row(
            user_id=account.user_id, token=token, ip=browser.ip, agent=browser.agent, now=now
        )
    if decision.device.alert:
        # A known browser alerts only at a recovery: described as a new one would be.
        described = device_row or devices.new_device_row(
            user_id=account.user_id, token="", ip=browser.ip, agent=browser.agent, now=now
        )
        alert = new_device_alert(
            site,
            user_id=account.user_id,
            username=account.username,
            email=account.email,
            device=described,
            method=method,
            now=now,
            recovery=decision.device.reason == RECOVERY,
        )
    return LoginPlan(
        method=method,
        account=account,
        browser=browser,
        decision=decision,
        device_id=known.id if known is not None else None,
        touch=touch,
        device_row=device_row,
        device_cookie=device_cookie,
        alert=alert,
        now=now,
    )


def write_login(writer: Writer, plan: LoginPlan, open_session: Callable[[int], str]) -> Written:
    """Run the plan's statements in the caller's transaction; ``open_session(device_id)``
    writes the session and returns its cookie value. The log lines are for the caller to
    write once committed."""
    device_id = plan.device_id
    if plan.device_row is not None:
        device_id = writer.insert(devices.INSERT, plan.device_row)
    assert device_id is not None
    alert = None
    browser = plan.browser
    login_row = events.login_row(
        method=plan.method,
        outcome="success",
        reason=plan.decision.device.reason,
        user_id=plan.account.user_id,
        username_attempt="",
        ip=browser.ip,
        agent=browser.agent,
        device_id=device_id,
        now=plan.now,
    )
    with writer.batch():
        if plan.touch is not None:
            writer.execute(devices.TOUCH, plan.touch)
        if plan.alert is not None:
            rows = plan.alert.for_device(device_id)
            writer.execute(tokens.INSERT, rows.token)
            writer.execute(outbox.INSERT, rows.mail)
            writer.execute(SECURITY_EVENT, rows.event)
            writer.mail_queued()
            alert = rows.log_fields
        session_token = open_session(device_id)
        writer.execute(events.RECORD, login_row)
    return Written(device_id, plan.device_cookie, session_token, login_row, alert)


def announce(written: Written, username: str, log_target: Any = None) -> None:
    """The log lines and metrics of a committed login."""
    if written.alert is not None:
        events.emit("new_device_alert", log_target=log_target, **written.alert)
    events.announce_login(written.login_row, username, log_target)
