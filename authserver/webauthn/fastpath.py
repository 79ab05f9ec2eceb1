"""The two passkey login calls, answered before Flask in their usual case (issue 3).

A passkey login is two requests (``POST /webauthn/login/options`` then ``/login/verify``)
and is the portal's hot path. Measured under load, Flask's request machinery and
SQLAlchemy's execution layer cost more than the login's own work (the signature check,
the challenge, four small writes). This WSGI middleware answers the common case itself:

- options for a discoverable ceremony (``{}``, no identifiant);
- a verify that succeeds, from a known device, in a browser without a session.

Everything else — an identifiant, any refusal, an unknown device (the new-device
e-mail), a browser that already has a session, a concurrent login moving the counter,
any unexpected error — is handed to the Flask views unchanged, *before anything was
written*: they then do the whole work again and answer as always (the same errors, events
and alerts). So the Flask views stay the definition of the behaviour; this module only
runs the same steps (the same protocol checks, statements, row builders and cookies)
with less machinery, and tests compare the two answers.

Writes happen in one short transaction on a driver connection (rawsql.py): the counter's
compare-and-set first (a lost race goes to Flask with nothing spent), then the ceremony
is spent (single use: of two concurrent verifies only one spends it; the other is handed
to Flask, which refuses it), then the device's last-seen time (at most once a minute), the
session and the login event. The security log line and metrics follow the commit.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import and_, bindparam, exists, select
from webauthn.helpers import bytes_to_base64url

from authserver.alerts import devices, events, security_log
from authserver.db import get_database
from authserver.jsonapi import FORBIDDEN_CHARACTERS
from authserver.logthrottle import FailureLog
from authserver.metrics import PASSKEY_CEREMONIES, FastObserver
from authserver.models import CertificationRequest, Device, Membership, User, utcnow
from authserver.rawsql import RawConnections
from authserver.sessions import store as session_store
from authserver.sessions.completion import AMR, safe_next
from authserver.sessions.landing import landing_endpoint
from authserver.sessions.login import COOKIE_NAME as SESSION_COOKIE
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


_USERS = User.__table__
_DEVICES = Device.__table__
_MEMBERSHIPS = Membership.__table__
_CERTIFICATIONS = CertificationRequest.__table__
# Every read of a login in one statement: each statement costs more than the rows it reads
# (its read transaction, the GIL handed over and back). The passkey and its owner, this
# browser's device row (NULL: a new device), and what ``landing_endpoint`` needs, as
# ``completion.landing_url`` reads it: the role, the membership's status (one per user) and
# whether a certification was ever asked.
LOGIN_ROW = LOGIN_CANDIDATE.outerjoin(
    _DEVICES,
    and_(_DEVICES.c.user_id == _USERS.c.id, _DEVICES.c.cookie_hash == bindparam("cookie")),
).add_columns(
    _DEVICES.c.id,
    _DEVICES.c.last_seen_at,
    _DEVICES.c.last_ip,
    select(_MEMBERSHIPS.c.status).where(_MEMBERSHIPS.c.user_id == _USERS.c.id).scalar_subquery(),
    exists().where(_CERTIFICATIONS.c.user_id == _USERS.c.id),
)


# A fast answer: its headers and body (the status is always 200: refusals are the views').
Answer = tuple[list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class _Checked:
    """What the reads and checks of a verify decided, for its writes."""

    target: str
    user_id: int
    username: str
    device_id: int
    use: dict[str, Any] | None  # the passkey's RECORD_USE values, if anything changed
    touch: dict[str, Any] | None  # the device's TOUCH values, if due


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
        self.touch_device = self.raw.prepare(devices.TOUCH)
        self.record_use = self.raw.prepare(service.RECORD_USE)
        self.open_session = self.raw.prepare(session_store.OPEN)
        self.record_login = self.raw.prepare(events.RECORD)
        self.observe_options = FastObserver("webauthn.login_options", "POST", OPTIONS_PATH)
        self.observe_verify = FastObserver("webauthn.login_verify", "POST", VERIFY_PATH)
        self.settings = app.config["AUTHSERVER"]
        # What the views read from the app context, read once (nothing here pushes one).
        self.rp = RelyingParty(
            id=self.settings.rp_id, name=service.RP_NAME, origins=self.settings.origins
        )
        self.secret_key = app.config["SECRET_KEY"]
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

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO")
        if (
            (path != OPTIONS_PATH and path != VERIFY_PATH)
            or environ.get("REQUEST_METHOD") != "POST"
            or not self.enabled
            or not self.warm
        ):
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
        token = cookies.get(service.BINDING_COOKIE)
        fresh = not token or len(token) > 100
        if fresh:
            token = secrets.token_urlsafe(32)
        assert token is not None
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
        binding = cookies.get(service.BINDING_COOKIE)
        device_cookie = cookies.get(devices.COOKIE_NAME)
        if SESSION_COOKIE in cookies or not binding or len(binding) > 100 or not device_cookie:
            raise Fallback
        device_token = devices.browser_token(device_cookie, key=self.secret_key)
        if device_token is None:
            raise Fallback
        try:
            assertion = authentication.read_assertion(credential)
        except Exception:
            raise Fallback from None
        ip = clean_ip(environ.get("REMOTE_ADDR"))
        agent = clean_user_agent(environ.get("HTTP_USER_AGENT"))
        try:
            token, login_row, target, username = self._transaction(
                assertion, binding, device_token, ip, agent
            )
        except Fallback:
            raise
        except Exception:  # a database or store failure: the view answers (503) and logs it
            log.debug("login verify handed to Flask", exc_info=True)
            raise Fallback from None
        # Committed: from here on nothing may hand the request to Flask (it would log in twice).
        environ[COMMITTED] = True
        events.announce_login(login_row, username, self.log_target)
        PASSKEY_CEREMONIES.labels("authentication", "success").inc()
        # url_for's paths carry the mount point (SCRIPT_NAME) of the request; ours are built
        # once without it.
        target = environ.get("SCRIPT_NAME", "").rstrip("/") + target
        return self._response(
            {"redirect": safe_next(next_url) or target},
            [
                self.cookies.session(token),
                self.cookies.device(device_cookie),
                self.drop_flask_session,
            ],
        )

    def _transaction(
        self,
        assertion: authentication.Assertion,
        binding: str,
        device_token: str,
        ip: str,
        agent: str,
    ) -> tuple[str, dict[str, Any], str, str]:
        with self.raw.transaction() as cursor:
            checked = self._check(cursor, assertion, device_token, ip)
            self.raw.begin_write(cursor)
            token, login_row = self._write(cursor, assertion, checked, binding, ip, agent)
        return token, login_row, checked.target, checked.username

    def _check(
        self, cursor: Any, assertion: authentication.Assertion, device_token: str, ip: str
    ) -> _Checked:
        """The reads and the checks, nothing written; Fallback unless all is plain."""
        row = self.read_login.first(
            cursor,
            {"credential_id": assertion.credential_id, "cookie": devices.token_hash(device_token)},
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
            device_id,
            last_seen_at,
            last_device_ip,
            membership_status,
            certification_asked,
        ) = row
        if cloned_at is not None or review_required:
            raise Fallback
        if activated_at is None or locked_at is not None:
            raise Fallback
        if device_id is None:
            raise Fallback  # a new device: the view sends the alert e-mail
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
        # Where the views' login lands (sessions/landing.py): the same function, the same inputs.
        endpoint = landing_endpoint(
            role=role,
            membership_status=membership_status,
            certified=certified_at is not None,
            certification_asked=lambda: True if certification_asked else None,
        )
        now = utcnow()
        use = None
        if service.use_to_record(
            sign_count, backup_state, last_used_ip, last_used_at, verified, ip, now
        ):
            use = {
                "pk": pk,
                "seen": sign_count,
                "count": verified.new_sign_count,
                "bs": verified.backup_state,
                "now": now,
                "ip": ip,
            }
        touch = None
        if devices.touch_due(last_device_ip, last_seen_at, ip, now):
            touch = {"pk": device_id, "now": now, "ip": ip}
        return _Checked(self._path(endpoint), user_id, username, device_id, use, touch)

    def _write(
        self,
        cursor: Any,
        assertion: authentication.Assertion,
        checked: _Checked,
        binding: str,
        ip: str,
        agent: str,
    ) -> tuple[str, dict[str, Any]]:
        """The counter's compare-and-set, the ceremony spent, the device, session and login
        event; Fallback (the caller rolls back) on a lost race."""
        if checked.use is not None and self.record_use.rowcount(cursor, checked.use) != 1:
            raise Fallback  # a concurrent login moved the counter: the view judges it
        # The ceremony is checked and spent in one step: it must be a discoverable login
        # begun in this browser, live, and not spent by a concurrent verify (which the view
        # then refuses); anything else goes to the view.
        expected = Pending("login", None, service.binding_hash(binding))
        if not self.store.spend_pending(assertion.challenge, expected):
            raise Fallback
        if checked.touch is not None:
            self.touch_device.execute(cursor, checked.touch)
        token, session_row = session_store.new_session_row(
            checked.user_id,
            method="passkey",
            amr=AMR["passkey"],
            ip=ip,
            user_agent=agent,
            lifetimes=self.lifetimes,
            device_id=checked.device_id,
        )
        self.open_session.execute(cursor, session_row)
        login_row = events.login_row(
            method="passkey",
            outcome="success",
            reason="",
            user_id=checked.user_id,
            username_attempt="",
            ip=ip,
            agent=agent,
            device_id=checked.device_id,
        )
        self.record_login.execute(cursor, login_row)
        return token, login_row

    def _path(self, endpoint: str) -> str:
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
