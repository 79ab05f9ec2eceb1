"""The password login page and its usual answer, given before Flask (issue 16).

A password login is two requests — ``GET /login`` (the page, with its CSRF token) then
``POST /login`` — around one Argon2id check. Measured in the server, the check took 21 ms
of CPU and the rest 6 ms (Flask's request machinery, the form, five ORM reads, three
transactions): password logins ran at 0.68–0.78 of the machine's Argon2id bound. This
module answers the usual case of both requests from the WSGI layer, as the passkey login
fast path (webauthn/fastpath.py, whose connections and cookies it shares) does:

- the page for a browser that brings no session of any kind: Flask renders it once per
  mount point and host, and only the CSRF token (and its Flask session cookie) changes
  from one answer to the next;
- a login that succeeds: the form and its CSRF token checked as Flask-WTF does, one
  prepared statement for every read, the password attempt counted in the throttle before
  the hash is checked, the login core's rows (sessions/login_core.py) in one short
  transaction, then the 302 the view sends.

It decides nothing of its own: the form's rules are ``forms.login_*_problem``, the account's
``login_core.may_log_in``, the landing and the alert ``login_core``, the passkey offer
``pages.offer_due``. Anything else is handed to the view *before anything is spent*; once
the attempt is counted or the hash checked (a wrong password, a throttled browser, a hash
to upgrade), the view gets them with the request (``password_attempt.PRECHECKED``) and
answers as always without counting or hashing a second time.
"""

from __future__ import annotations

import hmac
import io
import logging
import re
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import bindparam, func, select
from werkzeug.utils import redirect

from authserver.accounts.forms import login_password_problem, login_username_problem
from authserver.accounts.password_attempt import PRECHECKED, Prechecked
from authserver.accounts.service import HASHING_KEY, LoginOutcome, account_outcome
from authserver.accounts.validation import lookup_username_key
from authserver.alerts import devices
from authserver.logthrottle import FailureLog
from authserver.metrics import FastObserver
from authserver.models import User, WebAuthnCredential, utcnow
from authserver.sessions import login_core, login_row
from authserver.sessions.completion import safe_next
from authserver.sessions.login import COOKIE_NAME as SESSION_COOKIE
from authserver.sessions.login_row import with_facts
from authserver.signing import kept_signers
from authserver.throttle import EXTENSION_KEY as THROTTLE_KEY
from authserver.throttle import refund_of
from authserver.web import clean_ip, clean_user_agent, read_cookies, security_headers

if TYPE_CHECKING:
    from authserver.webauthn.fastpath import FastLogin

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM = 8 * 1024  # a login form is well under 1 KiB; larger: the view judges it
FIELDS = frozenset({"csrf_token", "username", "password", "next"})
MAX_PAGES = 8  # pages kept, one per (mount point, scheme, host): the host check bounds them
CSRF_FIELD = "csrf_token"  # Flask-WTF's session key and form field (WTF_CSRF_FIELD_NAME)
_CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's

_USERS = User.__table__
_CREDENTIALS = WebAuthnCredential.__table__
# Every read of a password login in one statement (the view makes five): the account and
# how many passkeys it has (the offer after a login), then the login's facts (login_row.py).
LOGIN_ROW = with_facts(
    select(
        _USERS.c.id,
        _USERS.c.username,
        _USERS.c.role,
        _USERS.c.password_hash,
        _USERS.c.activated_at,
        _USERS.c.locked_at,
        _USERS.c.password_reset_required,
        _USERS.c.certified_at,
        _USERS.c.passkey_offer_refused,
        _USERS.c.passkey_offer_after,
        select(func.count())
        .select_from(_CREDENTIALS)
        .where(_CREDENTIALS.c.user_id == _USERS.c.id)
        .scalar_subquery(),
    )
    .select_from(_USERS)
    .where(_USERS.c.username_key == bindparam("key"))
)


CSRF_META = re.compile(rb'<meta name="csrf-token" content="([^"]+)"')


class Handover(Exception):
    """Not the usual case: the view answers (with what was spent, if anything)."""


@dataclass(frozen=True)
class Page:
    """The login page as Flask rendered it, cut where its CSRF token goes."""

    parts: tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...]  # Content-Length and Set-Cookie: put in per answer


def _with_value(template: str, value: str) -> str:
    """``name=old; attributes`` → ``name=value; attributes``."""
    name, _, rest = template.partition("=")
    return f"{name}={value};{rest.partition(';')[2]}"


class PasswordFastPath:
    """Called by the passkey login fast path's middleware for ``/login`` (it is enabled and
    warm then); ``__call__`` answers or hands the request to Flask."""

    def __init__(self, fast: FastLogin) -> None:
        self.fast = fast
        app = fast.app
        self.wsgi_app = fast.wsgi_app
        self.read_login = fast.raw.prepare(LOGIN_ROW)
        self.hashing = app.extensions[HASHING_KEY]
        self.throttle = app.extensions[THROTTLE_KEY]
        secret_key: str = app.config.get("WTF_CSRF_SECRET_KEY") or app.config["SECRET_KEY"]
        self.csrf = kept_signers(URLSafeTimedSerializer(secret_key, salt=_CSRF_SALT))
        self.csrf_time_limit = app.config.get("WTF_CSRF_TIME_LIMIT", 3600)
        self.flask_sessions = kept_signers(app.session_interface.get_signing_serializer(app))  # type: ignore[attr-defined]
        self.flask_cookie = app.config["SESSION_COOKIE_NAME"]
        self.flask_max_age = int(app.permanent_session_lifetime.total_seconds())
        self.pages: dict[tuple[str, str, str], Page] = {}
        self.observe_page = FastObserver("accounts.login", "GET", LOGIN_PATH)
        self.observe_login = FastObserver("accounts.login", "POST", LOGIN_PATH)
        self.redirect_headers = [
            *security_headers(LOGIN_PATH, https=fast.settings.secure_cookies),
            ("Vary", "Cookie"),
        ]
        self.urls = app.url_map.bind("localhost")
        # A failure of this path's own (a bug) hits every login: one traceback a minute.
        self.failures = FailureLog(
            log,
            failure="password login fast path failed; the view answers",
            recovery="password login fast path answering again",
            unit="login",
        )
        # Requests answered here and handed to Flask, and logins among the answered (tests).
        self.answered = 0
        self.handed = 0
        self.logins = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method = environ.get("REQUEST_METHOD")
        if environ.get("QUERY_STRING") or SESSION_COOKIE in self._cookies(environ):
            return self._hand(environ, start_response)
        if method == "GET":
            return self._page(environ, start_response)
        if method == "POST":
            return self._login(environ, start_response)
        return self._hand(environ, start_response)

    @staticmethod
    def _cookies(environ: dict[str, Any]) -> dict[str, str]:
        cookies = environ.get("authserver.cookies")
        if cookies is None:
            cookies = environ["authserver.cookies"] = read_cookies(environ.get("HTTP_COOKIE", ""))
        return cookies

    def _hand(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.handed += 1
        return self.wsgi_app(environ, start_response)

    # ------------------------------------------------------------------ GET /login

    def _page(self, environ: dict[str, Any], start_response: Any) -> Any:
        """A browser with no session of any kind: the page, a new CSRF token in it."""
        if self.flask_cookie in self._cookies(environ):
            return self._hand(environ, start_response)  # flashed messages, a form in progress
        key = (
            environ.get("SCRIPT_NAME", ""),
            environ["wsgi.url_scheme"],
            environ.get("HTTP_HOST", ""),
        )
        page = self.pages.get(key)
        if page is None:
            return self._learn(key, environ, start_response)
        started = time.perf_counter()
        # The session's CSRF secret, in Flask-WTF's form (40 hex digits, 160 random bits).
        raw = secrets.token_hex(20)
        token = self.csrf.dumps(raw).encode()
        cookie = self.flask_sessions.dumps({CSRF_FIELD: raw})
        body = token.join(page.parts)
        headers = [
            (name, str(len(body)))
            if name == "Content-Length"
            else (name, _with_value(value, cookie))
            if name == "Set-Cookie"
            else (name, value)
            for name, value in page.headers
        ]
        self.answered += 1
        start_response("200 OK", headers)
        self.observe_page(environ, 200, time.perf_counter() - started)
        return [body]

    def _learn(
        self, key: tuple[str, str, str], environ: dict[str, Any], start_response: Any
    ) -> Any:
        """Flask answers; its page is kept if only the CSRF token can differ in the next."""
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers]
            return lambda data: None  # Flask never calls write()

        answer = self.wsgi_app(environ, capture)
        try:
            body = b"".join(answer)
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        status, headers = captured
        self.handed += 1
        page = self._cut(status, headers, body)
        if page is not None and len(self.pages) < MAX_PAGES:
            self.pages = {**self.pages, key: page}  # readers never see half
        start_response(status, headers)
        return [body]

    def _cut(self, status: str, headers: list[tuple[str, str]], body: bytes) -> Page | None:
        cookies = [value for name, value in headers if name == "Set-Cookie"]
        if not status.startswith("200 ") or len(cookies) != 1:
            return None
        name, _, rest = cookies[0].partition("=")
        value = rest.partition(";")[0]
        if name != self.flask_cookie or "expires" in cookies[0].lower():
            return None
        found = CSRF_META.search(body)
        if found is None:
            return None
        token = found.group(1)
        try:
            session = self.flask_sessions.loads(value)
            signed = self.csrf.loads(token.decode())
        except (BadData, UnicodeDecodeError):
            return None
        if not isinstance(session, dict) or session != {CSRF_FIELD: signed}:
            return None
        return Page(tuple(body.split(token)), tuple(headers))

    # ------------------------------------------------------------------ POST /login

    def _login(self, environ: dict[str, Any], start_response: Any) -> Any:
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self._hand(environ, start_response)
        if mimetype != FORM_TYPE or not 0 < length <= MAX_FORM:
            return self._hand(environ, start_response)
        body = environ["wsgi.input"].read(length)
        started = time.perf_counter()
        try:
            if len(body) != length:  # the client went away mid-body: the view answers 400
                raise Handover
            headers, location = self._answer(environ, body)
        except Exception as exc:
            if not isinstance(exc, Handover):
                if environ.get(self.fast.committed_key):
                    raise  # logged in already: never a second time through the view
                self.failures.failed()
            environ["wsgi.input"] = io.BytesIO(body)  # the view reads the form again
            environ["CONTENT_LENGTH"] = str(len(body))
            return self._hand(environ, start_response)
        if self.failures.failing:  # one attribute read on the hot path
            self.failures.succeeded()
        self.answered += 1
        self.logins += 1
        response = redirect(location)
        payload = response.get_data()
        start_response(
            "302 FOUND",
            [
                ("Content-Type", response.headers["Content-Type"]),
                ("Content-Length", str(len(payload))),
                ("Location", response.headers["Location"]),
                *self.redirect_headers,
                *headers,
            ],
        )
        self.observe_login(environ, 302, time.perf_counter() - started)
        return [payload]

    def _form(self, environ: dict[str, Any], body: bytes) -> dict[str, str]:
        """The form when it is the login page's, its CSRF token genuine; else Handover."""
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise Handover from None
        form = dict(pairs)
        if len(form) != len(pairs) or not form.keys() <= FIELDS:
            raise Handover
        cookie = self._cookies(environ).get(self.flask_cookie)
        if not cookie:
            raise Handover
        try:
            session = self.flask_sessions.loads(cookie, max_age=self.flask_max_age)
            signed = self.csrf.loads(form.get(CSRF_FIELD, ""), max_age=self.csrf_time_limit)
        except BadData:
            raise Handover from None
        if not isinstance(session, dict) or set(session) != {CSRF_FIELD}:
            raise Handover
        secret = session[CSRF_FIELD]
        if not isinstance(secret, str) or not isinstance(signed, str):
            raise Handover
        if not hmac.compare_digest(secret, signed):
            raise Handover
        return form

    def _answer(self, environ: dict[str, Any], body: bytes) -> tuple[list[tuple[str, str]], str]:
        """A successful login's cookies and where it goes; Handover for anything else."""
        fast = self.fast
        form = self._form(environ, body)
        username = form.get("username", "").strip()
        password = form.get("password", "")
        if login_username_problem(username) or login_password_problem(password):
            raise Handover  # the view records the attempt and shows the problem
        key = lookup_username_key(username)
        if key is None:
            raise Handover  # no account can have it: the view spends its dummy hash
        next_url = form.get("next") or None  # safe_next refuses control characters
        cookies = self._cookies(environ)
        device_cookie = cookies.get(devices.COOKIE_NAME)
        device_token = devices.browser_token(
            device_cookie or "", key=fast.secret_key, fallbacks=fast.key_fallbacks
        )
        browser = login_core.Browser(
            ip=clean_ip(environ.get("REMOTE_ADDR")),
            agent=clean_user_agent(environ.get("HTTP_USER_AGENT")),
            device_cookie=device_cookie,
            device_token=device_token,
        )
        cookie_hash = devices.token_hash(device_token) if device_token is not None else None
        try:
            with fast.raw.transaction() as cursor:
                row = self.read_login.first(cursor, {"key": key, "cookie": cookie_hash})
        except Exception:  # the database is down: the view answers (503) and logs it
            log.debug("password login handed to Flask", exc_info=True)
            raise Handover from None
        if row is None:
            raise Handover
        (
            user_id,
            account_name,
            role,
            password_hash,
            activated_at,
            locked_at,
            reset_required,
            certified_at,
            offer_refused,
            offer_after,
            passkeys,
        ) = row[: -login_row.FACTS]
        device_id = row[-login_row.FACTS]
        outcome = account_outcome(
            activated=activated_at is not None,
            locked=locked_at is not None,
            reset_required=bool(reset_required),
        )
        if outcome is not LoginOutcome.OK:
            raise Handover  # refused by the view, after the password check
        device_key = cookie_hash.hex() if device_id is not None and cookie_hash else None

        # Spent from here on: what the view would do again is handed over with the request.
        reservation = self.throttle.reserve_login(key, browser.ip, device_key)
        spent = Prechecked(key, user_id, reservation)
        if not reservation.allowed:
            environ[PRECHECKED] = spent
            raise Handover
        verification = self.hashing.verify(password_hash, password)
        spent = replace(spent, password_hash=password_hash, verification=verification)
        if not verification.ok or verification.needs_rehash:
            environ[PRECHECKED] = spent
            raise Handover

        account, known, decision = login_row.decide_row(
            "password",
            user_id=user_id,
            username=account_name,
            role=role,
            certified_at=certified_at,
            facts=row[-login_row.FACTS :],
        )
        now = utcnow()
        mount = environ.get("SCRIPT_NAME", "").rstrip("/")
        plan = login_core.plan_login(
            fast.site_under(mount),
            method="password",
            account=account,
            browser=browser,
            known=known,
            decision=decision,
            secret_key=fast.secret_key,
            now=now,
        )
        refund = refund_of(reservation, key, device_key, logged_in=True)
        # Counters in this database: given back in the login's own transaction, one write
        # fewer on SQLite's lock; elsewhere (Redis) once the login is committed.
        with_login = self.throttle.refund_job(refund, fast.raw.engine)
        try:
            written = fast.write_plan(plan, also=with_login)
        except Exception:
            environ[PRECHECKED] = spent  # nothing written: the view logs in (or answers 503)
            log.debug("password login handed to Flask", exc_info=True)
            raise Handover from None
        environ[fast.committed_key] = True
        if with_login is None:
            try:
                self.throttle.give_back(refund)
            except Exception:  # logged in: at worst the attempt stays counted as a failure
                log.warning("password login fast path: the attempt was not refunded", exc_info=True)
        login_core.announce(written, account_name, fast.log_target)
        target = safe_next(next_url) or mount + fast.endpoint_path(decision.endpoint)
        if login_core.offer_due(
            refused=offer_refused, after=offer_after, passkeys=lambda: passkeys, now=now
        ):
            target = mount + self.urls.build("passkeys.offer", {"next": target})
        return [
            fast.cookies.session(written.session_token),
            fast.cookies.device(written.device_cookie),
            fast.drop_flask_session,
        ], target
