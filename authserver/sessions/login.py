"""Flask-Login glue: the current user comes from our session cookie, never from Flask's.

``start_session`` is the single way any login method (password, passkey)
becomes a session, so every method gets the same cookie, lifetimes and record.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, Request, Response, current_app, g, request
from flask import session as flask_session
from flask_login import LoginManager

from authserver import db
from authserver.config import Settings
from authserver.models import AuthSession, User
from authserver.sessions import store
from authserver.web import client_ip, settings, user_agent

COOKIE_NAME = "authserver_session"

login_manager = LoginManager()
login_manager.login_view = "accounts.login"
login_manager.login_message = "Veuillez vous connecter pour accéder à cette page."
login_manager.login_message_category = "info"
login_manager.session_protection = None


def lifetimes() -> store.Lifetimes:
    config = settings()
    return store.Lifetimes(idle=config.session_idle, absolute=config.session_absolute)


@login_manager.request_loader
def _load_from_cookie(req: Request) -> User | None:
    token = req.cookies.get(COOKIE_NAME)
    if not token:
        return None
    session = db.session()
    record = store.load_session(session, token, lifetimes())
    if record is None:
        g.clear_session_cookie = True
        return None
    if store.needs_touch(record):
        store.touch(session, record)
        session.commit()
    g.auth_session = record
    return record.user


def current_auth_session() -> AuthSession | None:
    from flask_login import current_user

    _ = current_user.is_authenticated  # force the loader
    return g.get("auth_session")


RECENT_AUTH_SECONDS = 5 * 60


def recently_authenticated() -> bool:
    """Did this browser prove presence (login or re-authentication) in the last 5 minutes?"""
    from authserver.models import utcnow

    record = current_auth_session()
    moment = store.last_presence(record) if record else None
    return moment is not None and (utcnow() - moment).total_seconds() <= RECENT_AUTH_SECONDS


def recent_presence_method() -> str | None:
    """How this browser last proved presence (``password``, ``passkey``), if it did within
    the last 5 minutes: removing the password needs that proof to be a passkey."""
    from authserver.models import utcnow

    record = current_auth_session()
    if record is None:
        return None
    moment = store.last_presence(record)
    if moment is None or (utcnow() - moment).total_seconds() > RECENT_AUTH_SECONDS:
        return None
    if record.reauthenticated_at is not None and moment == record.reauthenticated_at:
        return record.reauth_method
    return record.method


def confirm_presence(method: str) -> None:
    """The re-authentication succeeded: recorded on the session, new cookie value (the
    caller commits)."""
    record = current_auth_session()
    if record is not None:
        g.new_session_token = store.confirm_presence(db.session(), record, method=method)


def start_session(user: User, *, method: str, amr: list[str], device_id: int | None = None) -> str:
    """Give the browser a fresh session cookie value (no fixation); the caller commits.

    The same user logging in again in this browser (``prompt=login``, ``max_age``, a
    passkey step-up) keeps the session and the services' tokens bound to it; another
    user's session left in the browser is revoked (its services are told).
    """
    session = db.session()
    # Not g.auth_session alone: it is only set once something asked for current_user, and the
    # passkey login API never does, which left the replaced session alive.
    previous = current_auth_session() if request.cookies.get(COOKIE_NAME) else None
    details = {
        "method": method,
        "amr": amr,
        "ip": client_ip(),
        "user_agent": user_agent(),
        "lifetimes": lifetimes(),
        "device_id": device_id,
    }
    if previous is not None and previous.user_id == user.id:
        token = store.reauthenticate(session, previous, **details)
    else:
        if previous is not None:
            store.revoke(session, previous.id_hash, "replaced")
        token = store.open_session(session, user, **details)
    g.pop("auth_session", None)
    # Drop whatever the anonymous browser carried (CSRF secret included).
    flask_session.clear()
    g.new_session_token = token
    g._login_user = user
    return token


def end_session() -> None:
    """Revoke this browser's session server-side; the caller commits."""
    record = current_auth_session()
    if record is not None:
        store.revoke(db.session(), record.id_hash, "logout")
    flask_session.clear()
    g.clear_session_cookie = True
    g.pop("auth_session", None)


def set_session_cookie_on(response: Response, token: str, config: Settings) -> None:
    """The session cookie (also written by the passkey login fast path, fastcookies.py)."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        httponly=True,
        secure=config.secure_cookies,
        samesite="Lax",
        path="/",
        domain=config.cookie_domain,  # AUTHSERVER_COOKIE_DOMAIN (issue 6)
    )


def _set_cookies(response: Response) -> Response:
    config = current_app.config["AUTHSERVER"]
    token = g.get("new_session_token")
    if token:
        set_session_cookie_on(response, token, config)
    elif g.get("clear_session_cookie") and COOKIE_NAME in request.cookies:
        response.delete_cookie(
            COOKIE_NAME, path="/", domain=config.cookie_domain, httponly=True, samesite="Lax"
        )
    return response


# Answers that never carry or check a form token, and must not read the database for one:
# the probes stay up while the database is down, forward-auth has its own single query.
_NO_FORMS = frozenset(
    {"static", "ops.healthz", "ops.readyz", "metrics", "forward_auth.verify", None}
)


def _bind_csrf_to_session() -> None:
    """A logged-in browser's CSRF tokens are derived from its login session (issue 11).

    Flask-WTF signs tokens over a random secret kept in Flask's own session cookie. A sibling
    subdomain under AUTHSERVER_COOKIE_DOMAIN could plant a Flask session cookie of its
    choosing (cookie tossing) and with it a token it knows. Here the secret is an HMAC of
    the server-side session's id: a planted cookie is overwritten before any token is read
    or checked, and a token of another session (or of the anonymous browser) fails.
    """
    if request.endpoint in _NO_FORMS or COOKIE_NAME not in request.cookies:
        return
    record = current_auth_session()
    if record is None:
        return
    key = current_app.config["SECRET_KEY"].encode()
    bound = hmac.new(key, b"authserver.csrf\x00" + record.id_hash, hashlib.sha256).hexdigest()
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    if flask_session.get(field) != bound:
        flask_session[field] = bound
        g.pop("csrf_token", None)  # Flask-WTF's per-request cache of the token


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.after_request(_set_cookies)
    # First of the before-request hooks: before CSRFProtect checks the token (web.py).
    app.before_request_funcs.setdefault(None, []).insert(0, _bind_csrf_to_session)
