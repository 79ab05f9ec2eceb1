"""``GET /auth/verify``: forward-auth for nginx ``auth_request`` and Traefik ForwardAuth.

The hottest path of the portal: every request to every protected service asks it. So it
reads the session cookie, runs one indexed query (the session joined to its user, by
primary key), and answers with headers. No Flask-Login, no ORM session, no password
hashing, no write except the session's throttled last-seen touch. A revocation takes
effect on the very next request: nothing is cached.

Measured (bench/forward_auth.py), two things cost more than the verdict itself, so both are
skipped: Flask's per-request machinery (``FastPath`` answers before Flask builds a request)
and SQLAlchemy's pool checkout and result processing (``Reader`` runs SQL written once for
the dialect on a few driver connections kept aside from the pool).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy import Engine, bindparam, update

from authserver.db import get_database
from authserver.logthrottle import FailureLog
from authserver.metrics import FastObserver
from authserver.models import AuthSession, utcnow
from authserver.rawsql import RawConnections
from authserver.sessions.login import COOKIE_NAME
from authserver.sessions.store import TOUCH_EVERY, hash_token
from authserver.web import read_cookies

log = logging.getLogger(__name__)

bp = Blueprint("forward_auth", __name__)

PATH = "/auth/verify"

READER_KEY = "authserver.forward_auth.reader"
OUTAGE_KEY = "authserver.forward_auth.outage"
SQL = (
    "SELECT s.revoked_at, s.expires_at, s.last_seen_at, s.amr, u.username, u.email, u.siret, "
    "u.certified_at, u.locked_at FROM auth_sessions s JOIN users u ON u.id = s.user_id "
    "WHERE s.token_hash = {placeholder}"
)
PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%(id_hash)s", "named": ":id_hash"}


class Reader:
    """The session-and-user lookup on driver connections kept aside (rawsql.py)."""

    def __init__(self, engine: Engine, keep: int = 8) -> None:
        self.raw = RawConnections(engine, keep)
        style = engine.dialect.paramstyle
        self.sql = SQL.format(placeholder=PLACEHOLDERS[style])
        self.named = style in ("pyformat", "named")

    def lookup(self, id_hash: bytes) -> tuple[Any, ...] | None:
        params: Any = {"id_hash": id_hash} if self.named else (id_hash,)
        for attempt in (1, 2):
            try:
                with self.raw.transaction() as cursor:
                    cursor.execute(self.sql, params)
                    row: tuple[Any, ...] | None = cursor.fetchone()
                return row
            except self.raw.errors:
                # The dead connection was dropped (invalidated): try a fresh one, once.
                if attempt == 2:
                    raise
        return None


def _utc(value: Any) -> datetime | None:
    """Driver value of a UTCDateTime column (SQLite: ISO text; PostgreSQL: naive datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc)


_TOUCH = (
    update(AuthSession)
    .where(AuthSession.token_hash == bindparam("session_id"))
    .values(last_seen_at=bindparam("now"))
)


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
    row = app.extensions[READER_KEY].lookup(id_hash)
    if row is None:
        return DENIED
    revoked_at, expires_at, last_seen_at, amr, username, email, siret, certified_at, locked = row
    expires_at, last_seen_at = _utc(expires_at), _utc(last_seen_at)
    assert expires_at is not None and last_seen_at is not None
    now = utcnow()
    if (
        revoked_at is not None
        or expires_at <= now
        or last_seen_at + timedelta(seconds=app.config["AUTHSERVER"].session_idle) <= now
        or locked is not None
    ):
        return DENIED
    if now - last_seen_at >= TOUCH_EVERY:
        with get_database(app).engine.begin() as connection:
            connection.execute(_TOUCH, {"session_id": id_hash, "now": now})
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
