"""The two passkey login calls, answered before Flask in their usual case (issues 3, 13).

A passkey login is two requests (``POST /webauthn/login/options`` then ``/login/verify``)
and is the portal's hot path. Measured under load, Flask's request machinery and
SQLAlchemy's execution layer cost more than the login's own work (the signature check,
the challenge, a few small writes). This WSGI middleware answers the common cases itself:

- options for a discoverable ceremony (``{}``, no identifiant);
- a verify that succeeds, in a browser without a session: from a known device, and from a
  new one (issue 13: every employer's first browser, a new PC, cleared cookies, a shared
  workstation), its alert e-mail included.

It decides nothing of its own: the login's rules and rows are the login core's
(sessions/login_core.py), which the views call too; this module only reads the facts in one
prepared statement and runs the core's writes on a driver connection. Everything else — an
identifiant, any refusal, a browser that already has a session, a concurrent login moving
the counter, any unexpected error — is handed to the Flask views unchanged, *before anything
was written*: they then do the whole work again and answer as always. Tests compare the two
answers, and the whole database after the same logins answered both ways
(tests/sessions/test_login_equivalence.py).

Writes happen on a driver connection (rawsql.py): the counter's compare-and-set (a lost
race goes to Flask), the ceremony spent (single use: of two concurrent verifies only one
spends it; the other is handed to Flask, which refuses it), the login core's rows (device,
alert, session, login event).
- On SQLite the writes of the logins a worker is answering at the same moment share one
  transaction, each in a savepoint of its own (groupcommit.py): one turn of the database's
  write lock and one commit for them all.
- On PostgreSQL the ceremony is spent first, then the compare-and-set and the rows are one
  statement (onestatement.py): one round trip instead of six to ten.
A login whose rows were not written gives its ceremony back before Flask is handed the
request, so the view judges the assertion as the browser sent it. The security log lines,
metrics and the mail worker's wake-up follow the commit.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask
from webauthn.helpers import bytes_to_base64url

from authserver.accounts.password_fastpath import LOGIN_PATH, PasswordFastPath
from authserver.alerts import devices, security_log
from authserver.alerts.notify import Site
from authserver.db import get_database
from authserver.groupcommit import GroupCommit
from authserver.jsonapi import FORBIDDEN_CHARACTERS
from authserver.logthrottle import FailureLog
from authserver.mail import EXTENSION_KEY as MAIL_EXTENSION
from authserver.metrics import PASSKEY_CEREMONIES, FastObserver
from authserver.models import utcnow
from authserver.onestatement import Composer, LostRace
from authserver.rawsql import RawConnections
from authserver.sessions import login_core, login_row
from authserver.sessions import store as session_store
from authserver.sessions.completion import safe_next
from authserver.sessions.login import COOKIE_NAME as SESSION_COOKIE
from authserver.sessions.login_row import with_facts
from authserver.web import clean_ip, clean_user_agent, read_cookies, security_headers
from authserver.webauthn import authentication, service
from authserver.webauthn.challenges import DatabaseChallengeStore, Pending
from authserver.webauthn.credentials import LOGIN_CANDIDATE
from authserver.webauthn.fastcookies import LoginCookies, dropped_flask_session
from authserver.webauthn.rp import (
    CEREMONY_TIMEOUT_MS,
    CHALLENGE_BYTES,
    CHALLENGE_TTL,
    RelyingParty,
)

log = logging.getLogger(__name__)

OPTIONS_PATH = "/webauthn/login/options"
VERIFY_PATH = "/webauthn/login/verify"
EXTENSION_KEY = "authserver.webauthn.fastpath"
# Flask's MAX_CONTENT_LENGTH is 256 KiB; an assertion is about 1 KiB. Larger: Flask decides.
MAX_BODY = 64 * 1024
COMMITTED = "authserver.fastpath.committed"


# Every read of a login in one statement: each statement costs more than the rows it reads
# (its read transaction, the GIL handed over and back). The passkey and its owner, then the
# login's facts (login_row.py).
LOGIN_ROW = with_facts(LOGIN_CANDIDATE)


# A fast answer: its headers and body (the status is always 200: refusals are the views').
Answer = tuple[list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class _Checked:
    """What the reads and checks of a verify decided, for its writes."""

    plan: login_core.LoginPlan  # every row of the login, built before the write lock
    use: dict[str, Any] | None  # the passkey's RECORD_USE values, if anything changed


class _Ceremony:
    """The login's ceremony, and the seconds it had left once this login took it (until
    the login's rows are committed: then it stays spent)."""

    def __init__(self, challenge: bytes, pending: Pending) -> None:
        self.challenge = challenge
        self.pending = pending
        self.left: float | None = None

    def take(self, store: Any) -> None:
        """Spend it (Fallback when it is not this browser's live discoverable login)."""
        self.left = store.take_pending(self.challenge, self.pending)
        if self.left is None:
            raise Fallback

    def kept(self) -> None:
        self.left = None


class _CursorWriter:
    """The login core's statements on the fast path's driver cursor (login_core.Writer)."""

    def __init__(self, fast: FastLogin, cursor: Any) -> None:
        self.fast = fast
        self.cursor = cursor
        self.queued = False

    def insert(self, statement: Any, row: dict[str, Any]) -> int:
        found = self.fast.raw.prepared(statement).first(self.cursor, row)
        assert found is not None
        return int(found[0])

    def execute(self, statement: Any, row: dict[str, Any]) -> None:
        self.fast.raw.prepared(statement).execute(self.cursor, row)

    def mail_queued(self) -> None:
        self.queued = True

    def batch(self) -> AbstractContextManager[None]:
        return self.fast.raw.pipeline(self.cursor)


class Fallback(Exception):
    """Not the usual case: the Flask view answers (nothing was written)."""


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise Fallback from None
    if not isinstance(value, dict):
        raise Fallback
    return value


class FastLogin:
    """WSGI middleware in front of the Flask app (inside ProxyFix: addresses are the
    client's). Disabled (everything goes to Flask) where ceremonies live in the main
    database's ORM session (PostgreSQL without Redis)."""

    def __init__(self, app: Flask, wsgi_app: Any) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.store = app.extensions[service.STORE_KEY]
        self.enabled = not isinstance(self.store, DatabaseChallengeStore)
        # Flask runs its first-request hooks (workers started lazily) on the first request.
        self.warm = False
        database = get_database(app)
        self.raw = RawConnections(database.engine, short_waits=True)
        self.read_login = self.raw.prepare(LOGIN_ROW)
        self.record_use = self.raw.prepare(service.RECORD_USE)
        # SQLite: the writes of concurrent logins share one transaction (groupcommit.py).
        # PostgreSQL has no single write lock: each login's writes are one statement
        # (onestatement.py).
        self.group = GroupCommit(self.raw) if self.raw.short_waits else None
        self.composer = None if self.group is not None else Composer(self.raw)
        self.observe_options = FastObserver("webauthn.login_options", "POST", OPTIONS_PATH)
        self.observe_verify = FastObserver("webauthn.login_verify", "POST", VERIFY_PATH)
        self.settings = app.config["AUTHSERVER"]
        # What the views read from the app context, read once (nothing here pushes one).
        self.rp = RelyingParty(
            id=self.settings.rp_id, name=service.RP_NAME, origins=self.settings.origins
        )
        self.secret_key = app.config["SECRET_KEY"]
        self.key_fallbacks = tuple(app.config.get("SECRET_KEY_FALLBACKS", ()))
        # The alert e-mail's links: the app's URL map, bound once (the request's mount point,
        # SCRIPT_NAME, is put in front as url_for would).
        urls = app.url_map.bind("localhost")
        self.site = Site(
            base_url=self.settings.base_url,
            build=lambda endpoint, **values: urls.build(endpoint, values),
        )
        self.log_target = security_log.target_of(app)
        self.lifetimes = session_store.Lifetimes(
            idle=self.settings.session_idle, absolute=self.settings.session_absolute
        )
        self.paths: dict[str, str] = {}
        self.discoverable: dict[str, Any] | None = None
        self.headers = [
            ("Content-Type", "application/json"),
            *security_headers(VERIFY_PATH, https=self.settings.secure_cookies),
            ("Vary", "Cookie"),  # as Flask's: the answer depends on the browser's cookies
        ]
        self.cookies = LoginCookies(self.settings)
        self.drop_flask_session = dropped_flask_session(app)
        # A failure of this path's own (a bug) hits every call: one traceback a minute.
        self.failures = FailureLog(
            log,
            failure="passkey login fast path failed; the view answers",
            recovery="passkey login fast path answering again",
            unit="call",
        )
        # How many calls this path answered and handed to Flask (tests, benchmark).
        self.answered = 0
        self.handed = 0
        self.committed_key = COMMITTED
        # The password login page and its usual answer (issue 16), on the same connections.
        self.password = PasswordFastPath(self)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO")
        if (
            (path != OPTIONS_PATH and path != VERIFY_PATH)
            or environ.get("REQUEST_METHOD") != "POST"
            or not self.enabled
            or not self.warm
        ):
            if path == LOGIN_PATH and self.enabled and self.warm:
                return self.password(environ, start_response)
            self.warm = True
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        body = self._body(environ)
        if body is None:
            return self.wsgi_app(environ, start_response)
        try:
            if path == OPTIONS_PATH:
                response = self.options(environ, body)
                observe = self.observe_options
            else:
                response = self.verify(environ, body)
                observe = self.observe_verify
        except Fallback:
            # Not the usual case (malformed input included): nothing to log, the view judges.
            if self.failures.failing:
                self.failures.succeeded()
            self.handed += 1
            environ["wsgi.input"] = io.BytesIO(body)
            return self.wsgi_app(environ, start_response)
        except Exception:
            if environ.get(COMMITTED):
                raise  # logged in already: never a second time through the views
            self.failures.failed()
            self.handed += 1
            environ["wsgi.input"] = io.BytesIO(body)
            return self.wsgi_app(environ, start_response)
        if self.failures.failing:  # one attribute read on the hot path
            self.failures.succeeded()
        self.answered += 1
        headers, payload = response
        start_response("200 OK", headers)
        observe(environ, 200, time.perf_counter() - started)
        return [payload]

    def _body(self, environ: dict[str, Any]) -> bytes | None:
        """The JSON body, read whole; None (nothing read) when Flask should judge it."""
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if mimetype != "application/json":
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY:
            return None
        body = environ["wsgi.input"].read(length)
        if len(body) != length:  # the client went away mid-body: let Flask answer 400
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            return None
        return body

    def _response(self, payload: dict[str, Any], cookies: list[tuple[str, str]]) -> Answer:
        """A 200 JSON answer with the headers Flask's hooks would add (see ``headers``)."""
        body = (json.dumps(payload, separators=(",", ":")) + "\n").encode()
        return [("Content-Length", str(len(body))), *self.headers, *cookies], body

    # ------------------------------------------------------------------ options

    def options(self, environ: dict[str, Any], body: bytes) -> Answer:
        """A discoverable ceremony: what ``views.login_options`` does for ``{}``."""
        username = _json(body).get("username")
        if username is not None and (not isinstance(username, str) or username.strip()):
            raise Fallback  # username-first (or invalid): the view
        cookies = read_cookies(environ.get("HTTP_COOKIE", ""))
        token = service.usable_binding(cookies.get(service.BINDING_COOKIE))
        fresh = token is None
        if token is None:
            token = service.new_binding_token()
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        if self.discoverable is None:
            # Only the challenge changes from one discoverable ceremony to the next.
            self.discoverable = authentication.request_options(
                rp=self.rp,
                challenge=challenge,
                allow_credentials=None,
                timeout_ms=CEREMONY_TIMEOUT_MS,
            )
        options = {**self.discoverable, "challenge": bytes_to_base64url(challenge)}
        try:
            self.store.save(
                challenge, Pending("login", None, service.binding_hash(token)), CHALLENGE_TTL
            )
        except Exception:  # the store is down: the view answers (503) and logs it
            log.debug("login options handed to Flask", exc_info=True)
            raise Fallback from None
        cookies = [self.cookies.binding(token, environ.get("SCRIPT_NAME", ""))] if fresh else []
        return self._response(options, cookies)

    # ------------------------------------------------------------------ verify

    def verify(self, environ: dict[str, Any], body: bytes) -> Answer:
        """A successful login from a known device, in a browser without a session."""
        request_body = _json(body)
        credential = request_body.get("credential")
        next_url = request_body.get("next")
        if not isinstance(credential, dict):
            raise Fallback
        if next_url is not None and (
            not isinstance(next_url, str)
            or len(next_url) > 2000
            or FORBIDDEN_CHARACTERS.search(next_url)
        ):
            raise Fallback
        cookies = read_cookies(environ.get("HTTP_COOKIE", ""))
        binding = service.usable_binding(cookies.get(service.BINDING_COOKIE))
        device_cookie = cookies.get(devices.COOKIE_NAME)
        if SESSION_COOKIE in cookies or binding is None:
            raise Fallback
        device_token = devices.browser_token(
            device_cookie or "", key=self.secret_key, fallbacks=self.key_fallbacks
        )
        try:
            assertion = authentication.read_assertion(credential)
        except Exception:
            raise Fallback from None
        browser = login_core.Browser(
            ip=clean_ip(environ.get("REMOTE_ADDR")),
            agent=clean_user_agent(environ.get("HTTP_USER_AGENT")),
            device_cookie=device_cookie,
            device_token=device_token,
        )
        mount = environ.get("SCRIPT_NAME", "").rstrip("/")
        try:
            written, checked = self._transaction(assertion, binding, browser, mount)
        except Fallback:
            raise
        except Exception:  # a database or store failure: the view answers (503) and logs it
            log.debug("login verify handed to Flask", exc_info=True)
            raise Fallback from None
        # Committed: from here on nothing may hand the request to Flask (it would log in twice).
        environ[COMMITTED] = True
        login_core.announce(written, checked.plan.account.username, self.log_target)
        PASSKEY_CEREMONIES.labels("authentication", "success").inc()
        # url_for's paths carry the mount point (SCRIPT_NAME) of the request; ours are built
        # once without it.
        target = mount + self.endpoint_path(checked.plan.decision.endpoint)
        return self._response(
            {"redirect": safe_next(next_url) or target},
            [
                self.cookies.session(written.session_token),
                self.cookies.device(written.device_cookie),
                self.drop_flask_session,
            ],
        )

    def _transaction(
        self,
        assertion: authentication.Assertion,
        binding: str,
        browser: login_core.Browser,
        mount: str,
    ) -> tuple[login_core.Written, _Checked]:
        ceremony = _Ceremony(
            assertion.challenge, Pending("login", None, service.binding_hash(binding))
        )
        try:
            with self.raw.transaction() as cursor:
                checked = self._check(cursor, assertion, browser, mount)
                if self.composer is not None:
                    written, queued = self._write_at_once(cursor, ceremony, checked)
            if self.group is not None:
                written, queued = self.group.run(
                    lambda cursor: self._write(cursor, ceremony, checked)
                )
        except BaseException:
            self._put_back(ceremony)
            raise
        if queued:
            self._wake_mail()
        return written, checked

    def write_plan(
        self, plan: login_core.LoginPlan, also: Callable[[Any], None] | None = None
    ) -> login_core.Written:
        """The login core's rows of ``plan``, the password login fast path's: on SQLite in
        one short write transaction shared with the logins of the same moment, ``also``'s
        statements after them on the same cursor; on PostgreSQL as one statement."""

        def job(cursor: Any) -> tuple[login_core.Written, bool]:
            writer = _CursorWriter(self, cursor)
            done = self._write_login(writer, plan)
            if also is not None:
                also(cursor)
            return done, writer.queued

        if self.group is not None:
            written, queued = self.group.run(job)
        else:
            # PostgreSQL: this path runs only with Redis, where the throttle's counters are
            # too; statements of the counters here would not be in the one statement.
            if also is not None or self.composer is None:
                raise ValueError("statements beside the login need a transaction")
            with self.raw.transaction() as cursor:
                one = self.composer.statement(cursor)
                written = self._write_login(one, plan)
                one.run()
                queued = one.queued
        if queued:
            self._wake_mail()
        return written

    def site_under(self, mount: str) -> Site:
        """The alert e-mail's view of the app, its links under the request's mount point."""
        if not mount:
            return self.site
        build = self.site.build
        return replace(
            self.site, build=lambda endpoint, **values: mount + build(endpoint, **values)
        )

    def _check(
        self,
        cursor: Any,
        assertion: authentication.Assertion,
        browser: login_core.Browser,
        mount: str,
    ) -> _Checked:
        """The reads and the checks, nothing written; Fallback unless all is plain."""
        token = browser.device_token
        row = self.read_login.first(
            cursor,
            {
                "credential_id": assertion.credential_id,
                "cookie": devices.token_hash(token) if token is not None else None,
            },
        )
        if row is None:
            raise Fallback
        (
            pk,
            user_id,
            public_key,
            sign_count,
            backup_eligible,
            backup_state,
            cloned_at,
            review_required,
            last_used_at,
            last_used_ip,
            user_handle,
            username,
            role,
            activated_at,
            locked_at,
            certified_at,
        ) = row[: -login_row.FACTS]
        if cloned_at is not None or review_required:
            raise Fallback  # refused by the views, which mark and record it
        if not login_core.may_log_in(
            activated=activated_at is not None, locked=locked_at is not None
        ):
            raise Fallback
        try:
            # A discoverable ceremony (the only kind this path starts): the userHandle must be
            # the owner's. A username-first one fails to spend below and goes to the view.
            verified = authentication.verify_assertion(
                rp=self.rp,
                assertion=assertion,
                expected_challenge=assertion.challenge,
                stored=authentication.StoredCredential(
                    public_key=public_key,
                    sign_count=sign_count,
                    backup_eligible=backup_eligible,
                    owner_user_handle=user_handle,
                ),
                require_user_handle=True,
            )
        except Exception:
            raise Fallback from None
        account, known, decision = login_row.decide_row(
            "passkey",
            user_id=user_id,
            username=username,
            role=role,
            certified_at=certified_at,
            facts=row[-login_row.FACTS :],
        )
        now = utcnow()
        use = None
        if service.use_to_record(
            sign_count, backup_state, last_used_ip, last_used_at, verified, browser.ip, now
        ):
            use = {
                "pk": pk,
                "seen": sign_count,
                "count": verified.new_sign_count,
                "bs": verified.backup_state,
                "now": now,
                "ip": browser.ip,
            }
        plan = login_core.plan_login(
            self.site_under(mount),
            method="passkey",
            account=account,
            browser=browser,
            known=known,
            decision=decision,
            secret_key=self.secret_key,
            now=now,
        )
        return _Checked(plan, use)

    def _write(
        self, cursor: Any, ceremony: _Ceremony, checked: _Checked
    ) -> tuple[login_core.Written, bool]:
        """SQLite, in a transaction shared with the logins of the same moment: the
        counter's compare-and-set, the ceremony spent, then the login core's rows; Fallback
        (the caller rolls back) on a lost race. The rows, and whether mail was queued."""
        if checked.use is not None and self.record_use.rowcount(cursor, checked.use) != 1:
            raise Fallback  # a concurrent login moved the counter: the view judges it
        # The ceremony is checked and spent in one step: it must be a discoverable login
        # begun in this browser, live, and not spent by a concurrent verify (which the view
        # then refuses); anything else goes to the view.
        ceremony.take(self.store)
        writer = _CursorWriter(self, cursor)
        return self._write_login(writer, checked.plan), writer.queued

    def _write_at_once(
        self, cursor: Any, ceremony: _Ceremony, checked: _Checked
    ) -> tuple[login_core.Written, bool]:
        """PostgreSQL: the ceremony spent first, then the counter's compare-and-set and the
        login core's rows in one statement (onestatement.py), which commits itself."""
        assert self.composer is not None
        ceremony.take(self.store)
        one = self.composer.statement(cursor)
        if checked.use is not None:
            one.gate(service.RECORD_USE, checked.use)
        written = self._write_login(one, checked.plan)
        try:
            one.run()
        except LostRace:
            raise Fallback from None  # a concurrent login moved the counter: the view
        ceremony.kept()  # written: from here on the ceremony is spent for good
        return written, one.queued

    def _put_back(self, ceremony: _Ceremony) -> None:
        """A login that wrote nothing gives back the ceremony it took: the view it is
        handed to then judges the assertion as the browser sent it (a moved counter, a
        database error), instead of refusing a ceremony spent for nothing."""
        if ceremony.left is None:
            return
        try:
            self.store.put_back(ceremony.challenge, ceremony.pending, ceremony.left)
        except Exception:  # the view then refuses the spent ceremony: the user tries again
            log.warning("passkey login fast path: the ceremony was not put back", exc_info=True)

    def _write_login(
        self, writer: login_core.Writer, plan: login_core.LoginPlan
    ) -> login_core.Written:
        """The login core's rows through ``writer``."""

        def open_session(device_id: int) -> str:
            token, session_row = session_store.new_session_row(
                plan.account.user_id,
                method=plan.method,
                amr=plan.decision.amr,
                ip=plan.browser.ip,
                user_agent=plan.browser.agent,
                lifetimes=self.lifetimes,
                device_id=device_id,
            )
            writer.execute(session_store.OPEN, session_row)
            return token

        return login_core.write_login(writer, plan, open_session)

    def _wake_mail(self) -> None:
        worker = self.app.extensions.get(MAIL_EXTENSION)
        if worker is not None:
            worker.notify()

    def endpoint_path(self, endpoint: str) -> str:
        path = self.paths.get(endpoint)
        if path is None:
            with self.app.test_request_context("/"):
                from flask import url_for

                path = url_for(endpoint)
            self.paths = {**self.paths, endpoint: path}
        return path


def install(app: Flask) -> None:
    fast = FastLogin(app, app.wsgi_app)
    app.extensions[EXTENSION_KEY] = fast
    app.wsgi_app = fast  # type: ignore[method-assign]
