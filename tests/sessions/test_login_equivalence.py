"""One login core (issue 13): the same logins, answered with the passkey login fast path on
and off, leave the same rows in every table of the database and get the same answers.

A rule or a side effect of a login that one entry point applies and the other skips shows
up here as a difference, whatever table it touches. The script covers what a login meets:
an account's very first browser, a returning one, a new one (the alert e-mail), a password
login, refusals (wrong origin, another browser's ceremony), a cloned passkey, a locked
account and a passkey put under review by « Ce n'était pas moi ».
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import JSON, select, update

from authserver.db import get_database
from authserver.mail.rendering import bodies
from authserver.models import Base, OutboxMail, User, WebAuthnCredential, utcnow
from tests.conftest import PASSWORD
from tests.softauthn import SoftAuthenticator
from tests.webauthn.test_api import (
    Browser,
    authenticator,
    new_browser,
    seed_accounts,
    seed_passkey,
    user_row,
)
from tests.webauthn.test_fastpath import answer, fast

USERS = ("martin.dupont", "claire.martin", "paul.bloque", "lea.revue")
NOT_ME_PATH = re.compile(r"/alerts/not-me/[A-Za-z0-9_\-]+")


class Script:
    """The scripted logins on one app; ``answers`` collects every answer, in order."""

    def __init__(self, app: Flask, smtp: Any) -> None:
        self.app = app
        self.smtp = smtp
        self.answers: list[dict[str, Any]] = []
        self.keys: dict[str, SoftAuthenticator] = {}
        seed_accounts(app, *USERS)
        for username in USERS:
            self.keys[username] = authenticator()
            seed_passkey(app, self.keys[username], username)

    def browser(self, ua: str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0") -> Browser:
        browser = new_browser(self.app, self.smtp)
        browser.client.environ_base["HTTP_USER_AGENT"] = ua
        return browser

    def record(self, response: Any) -> Any:
        self.answers.append(answer(response))
        return response

    def passkey(self, browser: Browser, username: str, **assertion: Any) -> Any:
        options = self.record(browser.client.post("/webauthn/login/options", json={}))
        credential = self.keys[username].assert_(options.get_json(), **assertion)
        return self.record(browser.login_verify(credential))

    def password(
        self, browser: Browser, username: str, password: str = PASSWORD, **extra: str
    ) -> Any:
        """The login page, then the password form (the password login fast path's two)."""
        page = self.record(browser.client.get("/login"))
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
        assert token is not None
        form = {"csrf_token": token.group(1), "username": username, "password": password}
        return self.record(browser.client.post("/login", data={**form, **extra}))

    def set_user(self, username: str, **values: Any) -> None:
        with get_database(self.app).session_scope() as session:
            session.execute(update(User).where(User.username_key == username).values(**values))

    def not_me(self, browser: Browser) -> None:
        """The owner clicks « Ce n'était pas moi » in the last alert e-mail, and confirms."""
        with get_database(self.app).session_scope() as session:
            mail = session.scalars(
                select(OutboxMail)
                .where(OutboxMail.kind == "new_device")
                .order_by(OutboxMail.id.desc())
            ).first()
            assert mail is not None
            body, _html = bodies(  # the words the deliverer puts on the queued facts
                self.app.jinja_env,
                mail.subject,
                mail.body_text,
                mail.body_html,
                mail.template,
                mail.context,
            )
        match = NOT_ME_PATH.search(body)
        assert match is not None
        page = self.record(browser.client.get(match.group(0)))
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
        assert token is not None
        self.record(browser.client.post(match.group(0), data={"csrf_token": token.group(1)}))

    def run(self) -> None:
        martin, claire, paul, lea = USERS
        self.record(self.app.test_client().get("/healthz"))  # the fast path warms up
        office = self.browser()
        # An account's first browser: a device, no alert, a trusted login.
        assert self.passkey(office, martin).status_code == 200
        office.logout()
        # The same browser again: a returning login.
        assert self.passkey(office, martin).status_code == 200
        office.logout()
        # A new browser: a device, the alert e-mail, the « pas moi » link, a security event.
        laptop = self.browser("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15")
        assert self.passkey(laptop, martin).status_code == 200
        laptop.logout()
        # Another account in that browser (its cookie keeps its id), by password, then passkey.
        self.password(laptop, claire)
        laptop.logout()
        # A password login from a new browser (its alert), a wrong password, a returning one.
        train = self.browser("Mozilla/5.0 (X11; Ubuntu; Linux x86_64) Firefox/128.0")
        assert self.password(train, martin, "pas le bon mot de passe").status_code == 401
        assert self.password(train, martin).status_code == 302
        train.logout()
        assert self.password(train, martin, next="/espace").status_code == 302
        train.logout()
        assert self.passkey(laptop, claire).status_code == 200
        laptop.logout()
        shared = self.browser("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/133.0")
        assert self.passkey(shared, claire).status_code == 200
        shared.logout()
        # Refusals: another origin, another browser's ceremony.
        assert self.passkey(office, martin, origin="https://evil.example").status_code == 400
        options = office.client.post("/webauthn/login/options", json={}).get_json()
        stolen = self.keys[martin].assert_(options)
        assert self.record(shared.login_verify(stolen)).status_code == 400
        # A locked account.
        self.set_user(paul, locked_at=utcnow())
        assert self.passkey(office, paul).status_code == 403
        assert self.password(office, paul).status_code == 403
        # A cloned passkey: the counter went back.
        with get_database(self.app).session_scope() as session:
            user_id = user_row(self.app, martin).id
            session.execute(
                update(WebAuthnCredential)
                .where(WebAuthnCredential.user_id == user_id)
                .values(sign_count=500)
            )
        assert self.passkey(office, martin).status_code == 401
        # « Ce n'était pas moi »: the passkeys go under review, the next login is refused.
        home = self.browser()
        assert self.passkey(home, lea).status_code == 200
        home.logout()
        phone = self.browser("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari")
        assert self.passkey(phone, lea).status_code == 200
        phone.logout()
        self.not_me(self.browser())  # the account waits for a new password
        assert self.passkey(home, lea).status_code == 403
        # A passkey under review (a password reset put it there): refused until vouched for.
        with get_database(self.app).session_scope() as session:
            user_id = user_row(self.app, claire).id
            session.execute(
                update(WebAuthnCredential)
                .where(WebAuthnCredential.user_id == user_id)
                .values(review_required=True)
            )
        assert self.passkey(laptop, claire).status_code == 403


# Values that differ from one run to the next by nature: random ids, salts, hashes, times.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{32,}")
_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2})?|\d{1,2}/\d{2}/\d{4}|\d{1,2} \w+ \d{4}")


class Normalizer:
    """Random values become their rank of first appearance in their column, so equal values
    stay equal and different ones different; times become whether they are set."""

    def __init__(self) -> None:
        self.ranks: dict[tuple[str, str], dict[Any, str]] = {}

    def rank(self, where: tuple[str, str], value: Any) -> str:
        seen = self.ranks.setdefault(where, {})
        return seen.setdefault(value, f"<{where[1]} #{len(seen)}>")

    def value(self, where: tuple[str, str], value: Any) -> Any:
        if isinstance(value, datetime | float):  # floats: the throttle's expiry times
            return "<time>"
        if isinstance(value, bytes | memoryview):
            return self.rank(where, bytes(value))
        if isinstance(value, dict):
            return {k: self.value((where[0], f"{where[1]}.{k}"), v) for k, v in value.items()}
        if isinstance(value, str):
            if where[1] in ("password_hash", "public_id", "claim_token"):
                return self.rank(where, value)
            if where[1] == "context":  # a queued e-mail's facts (JSON): each value compared
                return self.value(where, json.loads(value))
            if "T" in value and re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.+]+", value):
                return "<time>"
            return _TIME.sub("<time>", _TOKEN.sub(lambda m: self.rank(where, m.group(0)), value))
        return value


def dump(app: Flask) -> dict[str, list[dict[str, Any]]]:
    normalize = Normalizer()
    tables: dict[str, list[dict[str, Any]]] = {}
    with get_database(app).engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            if not all(column.type.python_type is int for column in order):
                # A random key (a token's hash): the script's order is the creation time's.
                order = [c for c in table.columns if c.name == "created_at"] + [
                    c for c in table.columns if not isinstance(c.type, JSON)
                ]
            rows = connection.execute(select(table).order_by(*order)).mappings().all()
            tables[table.name] = [
                {key: normalize.value((table.name, key), value) for key, value in row.items()}
                for row in rows
            ]
    return tables


@pytest.fixture(params=["sqlite", pytest.param("pg+redis", marks=pytest.mark.pg)])
def app_factory(request: pytest.FixtureRequest, make_app: Any) -> Callable[[], Flask]:
    """A fresh app (fresh database) per call; no mail worker: the outbox rows stay as
    the logins wrote them."""
    if request.param == "sqlite":
        return lambda: make_app(AUTHSERVER_MAIL_WORKER="0")
    from tests.conftest import fresh_pg_url

    postgres = request.getfixturevalue("postgres")
    template = request.getfixturevalue("pg_template")
    redis = request.getfixturevalue("redis_server")

    def factory() -> Flask:
        redis.flush()
        url = fresh_pg_url(postgres, template)
        return make_app(url, AUTHSERVER_REDIS_URL=redis.url, AUTHSERVER_MAIL_WORKER="0")

    return factory


def test_the_fast_path_and_the_views_leave_the_same_database(app_factory, smtp):
    results = {}
    for enabled in (True, False):
        app = app_factory()
        path = fast(app)
        assert path.enabled
        path.enabled = enabled
        script = Script(app, smtp)
        script.run()
        results[enabled] = (
            script.answers,
            dump(app),
            path.answered + path.password.logins,
            path.handed,
        )
        assert not path.failures.failing  # no fast-path bug quietly handed to the views
        assert not path.password.failures.failing

    (fast_answers, fast_rows, answered, handed), (view_answers, view_rows, _, _) = (
        results[True],
        results[False],
    )
    # The fast path did answer: options, and every successful passkey login, new browsers
    # included (7 successes; the refusals and the views' own pages are handed over), and
    # the successful password logins (4).
    assert answered >= 7 + 7 + 4
    assert handed >= 5
    for table in view_rows:
        assert fast_rows[table] == view_rows[table], table
    assert len(fast_answers) == len(view_answers)
    for number, (fast_answer, view_answer) in enumerate(
        zip(fast_answers, view_answers, strict=True)
    ):
        for who in (fast_answer, view_answer):
            if who["json"] and "challenge" in who["json"]:
                who["json"]["challenge"] = "<challenge>"
        assert fast_answer == view_answer, number
    # The script met every case it names.
    assert {row["kind"] for row in view_rows["security_events"]} >= {
        "new_device",
        "passkey_cloned",
        "not_me",
    }
    reasons = {(row["outcome"], row["reason"]) for row in view_rows["login_events"]}
    assert {
        ("success", ""),
        ("success", "new_device"),
        ("failure", "origin_mismatch"),
        ("failure", "account_unavailable"),
        ("failure", "credential_cloned"),
    } <= reasons
    assert len(view_rows["outbox_mails"]) >= 4
