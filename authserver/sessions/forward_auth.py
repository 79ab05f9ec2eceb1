"""``GET /auth/verify``: forward-auth for nginx ``auth_request`` and Traefik ForwardAuth.

The hottest path of the portal: every request to every protected service asks it. So it
reads the session cookie, runs one indexed query (the session joined to its user, by
primary key), and answers with headers. No Flask-Login, no ORM session, no password
hashing, no write except the session's throttled last-seen touch. A revocation takes
effect on the very next request: nothing is cached.

Measured (bench/forward_auth.py), two things cost more than the verdict itself, so both are
skipped: Flask's per-request machinery (``FastPath`` answers before Flask builds a request)
and SQLAlchemy's pool checkout and execution layer (``Reader`` runs the statements below,
compiled once for the dialect, on a few driver connections kept aside from the pool:
rawsql.py). Whether the session is live is the session store's rule (``store.live``), the
same function the ORM's ``is_live`` asks (issue 13).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy import Engine, bindparam, select, update

from authserver.db import get_database
from authserver.logthrottle import FailureLog
from authserver.metrics import FastObserver
from authserver.models import AuthSession, User, utcnow
from authserver.rawsql import RawConnections
from authserver.sessions.login import COOKIE_NAME
from authserver.sessions.store import TOUCH_EVERY, hash_token, live
from authserver.web import read_cookies

log = logging.getLogger(__name__)

bp = Blueprint("forward_auth", __name__)

PATH = "/auth/verify"

READER_KEY = "authserver.forward_auth.reader"
OUTAGE_KEY = "authserver.forward_auth.outage"
_SESSIONS = AuthSession.__table__
_USERS = User.__table__
# The session and its user, by the cookie's hash: what the liveness rule (store.live) and
# the answer's headers need, in one indexed statement.
LOOKUP = (
    select(
        _SESSIONS.c.revoked_at,
        _SESSIONS.c.expires_at,
        _SESSIONS.c.last_seen_at,
        _SESSIONS.c.amr,
        _USERS.c.username,
        _USERS.c.email,
        _USERS.c.siret,
        _USERS.c.certified_at,
        _USERS.c.locked_at,
    )
    .join(_USERS, _USERS.c.id == _SESSIONS.c.user_id)
    .where(_SESSIONS.c.token_hash == bindparam("id_hash"))
)
TOUCH = (
    update(_SESSIONS)
    .where(_SESSIONS.c.token_hash == bindparam("session_token_hash"))
    .values(last_seen_at=bindparam("now"))
)


class Reader:
    """The session-and-user lookup, and the session's touch, as statements prepared once on
    driver connections kept aside from the pool (rawsql.py)."""

    def __init__(self, engine: Engine, keep: int = 8) -> None:
        self.raw = RawConnections(engine, keep)
        self.lookup_statement = self.raw.prepare(LOOKUP)
        self.touch_statement = self.raw.prepare(TOUCH)
        self.sql = self.lookup_statement.sql({"id_hash"})  # for EXPLAIN (tests)

    def lookup(self, id_hash: bytes) -> tuple[Any, ...] | None:
        for attempt in (1, 2):
            try:
                with self.raw.transaction() as cursor:
                    return self.lookup_statement.first(cursor, {"id_hash": id_hash})
            except self.raw.errors:
                # The dead connection was dropped (invalidated): try a fresh one, once.
                if attempt == 2:
                    raise
        return None

    def touch(self, id_hash: bytes, now: datetime) -> None:
        with self.raw.transaction() as cursor:
            self.touch_statement.execute(cursor, {"session_token_hash": id_hash, "now": now})


def _header(value: str | None) -> str:
    """Header-safe text: ASCII as is, anything else percent-encoded (UTF-8)."""
    if not value:
        return ""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="@.+-_~!$&'()*,;=: ")


COMMON = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
DENIED = (
    "401 UNAUTHORIZED",
    [("Content-Type", "application/json"), *COMMON],
    b'{"error":"unauthorized","message":"Vous devez \\u00eatre connect\\u00e9."}\n',
)
UNAVAILABLE = (
    "503 SERVICE UNAVAILABLE",
    [("Content-Type", "application/json"), *COMMON],
    b'{"error":"unavailable","message":"Le service est momentan\\u00e9ment indisponible."}\n',
)


def answer(app: Flask, cookie_header: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """The forward-auth verdict for a ``Cookie`` header: (status, headers, body)."""
    token = read_cookies(cookie_header).get(COOKIE_NAME) if cookie_header else None
    if not token or len(token) > 100:
        return DENIED
    id_hash = hash_token(token)
    reader = app.extensions[READER_KEY]
    row = reader.lookup(id_hash)
    if row is None:
        return DENIED
    revoked_at, expires_at, last_seen_at, amr, username, email, siret, certified_at, locked = row
    now = utcnow()
    if not live(
        revoked_at=revoked_at,
        expires_at=expires_at,
        last_seen_at=last_seen_at,
        locked_at=locked,
        idle=app.config["AUTHSERVER"].session_idle,
        now=now,
    ):
        return DENIED
    if now - last_seen_at >= TOUCH_EVERY:
        reader.touch(id_hash, now)
    headers = [
        ("Content-Length", "0"),
        ("X-Auth-User", _header(username)),
        ("X-Auth-Email", _header(email)),
        ("X-Auth-Siret", siret or ""),
        ("X-Auth-Certified", "true" if certified_at is not None else "false"),
        ("X-Auth-Amr", amr),
        *COMMON,
    ]
    return "200 OK", headers, b""


@bp.get(PATH)
def verify() -> Response:
    """The same answer through Flask (used when the fast path below is not installed)."""
    status, headers, body = answer(
        current_app._get_current_object(), request.headers.get("Cookie", "")
    )  # type: ignore[attr-defined]
    return Response(body, status=int(status.split()[0]), headers=headers)


class FastPath:
    """WSGI middleware: ``GET /auth/verify`` answered before Flask builds a request context.

    Flask's per-request machinery (context, URL matching, session, the after-request hooks
    for pages) costs more than the verdict itself; a reverse proxy's subrequest needs none
    of it. Everything else goes to the application unchanged. The latency metric and the
    JSON access-log line (the same line as Flask's, one ``json.dumps``) are kept.
    """

    def __init__(self, app: Flask, wsgi_app: Any) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.outage = FailureLog(
            log,
            failure="forward-auth failed, answering 503",
            recovery="forward-auth answering again",
        )
        self.observe = FastObserver("forward_auth.verify", "GET", PATH)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") not in (
            "GET",
            "HEAD",
        ):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        try:
            status, headers, body = answer(self.app, environ.get("HTTP_COOKIE", ""))
        except Exception:
            self.outage.failed()
            status, headers, body = UNAVAILABLE
        else:
            if self.outage.failing:  # one attribute read on the hot path
                self.outage.succeeded()
        self.observe(environ, int(status[:3]), time.perf_counter() - started)
        if body:
            headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]


def install(app: Flask) -> None:
    app.extensions[READER_KEY] = Reader(get_database(app).engine)
    app.register_blueprint(bp)
    fast = FastPath(app, app.wsgi_app)
    app.extensions[OUTAGE_KEY] = fast.outage
    app.wsgi_app = fast  # type: ignore[method-assign]
