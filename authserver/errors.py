"""Error answers: French pages for people, the contract's JSON form for programs.

The choice is made by the URL (JSON API prefixes), never by sniffing headers.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, Response, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError

from authserver import db

log = logging.getLogger(__name__)


def _driver_unavailable() -> tuple[type[Exception], ...]:
    """The drivers' "cannot talk to the server" errors (raw driver connections raise them)."""
    import sqlite3

    classes: list[type[Exception]] = [sqlite3.OperationalError, sqlite3.InterfaceError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover (psycopg is a dependency)
        pass
    else:
        classes += [psycopg.OperationalError, psycopg.InterfaceError]
    return tuple(classes)


DRIVER_UNAVAILABLE = _driver_unavailable()

JSON_PREFIXES = ("/webauthn/", "/api/", "/auth/", "/oauth/", "/.well-known/")

MESSAGES = {
    400: ("bad_request", "La requête est invalide."),
    401: ("unauthorized", "Vous devez être connecté."),
    403: ("forbidden", "Vous n'avez pas accès à cette page."),
    404: ("not_found", "La page demandée n'existe pas."),
    405: ("method_not_allowed", "Cette méthode n'est pas autorisée ici."),
    413: ("too_large", "La requête est trop volumineuse."),
    415: ("unsupported_media_type", "Le corps de la requête doit être du JSON."),
    429: ("too_many_requests", "Trop de tentatives. Veuillez réessayer plus tard."),
    500: ("server_error", "Une erreur inattendue est survenue. Veuillez réessayer."),
    503: ("unavailable", "Le service est momentanément indisponible."),
}


class APIError(Exception):
    """An error of the JSON API, carrying its machine code and French message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def json_error(status: int, error: str, message: str) -> Response:
    response = jsonify({"error": error, "message": message})
    response.status_code = status
    return response


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


FALLBACK_PAGE = (
    '<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Erreur {status}</title>'
    "</head><body><h1>Erreur {status}</h1><p>{message}</p></body></html>"
)


def error_response(status: int, error: str | None = None, message: str | None = None) -> Response:
    default_error, default_message = MESSAGES.get(status, MESSAGES[400 if status < 500 else 500])
    if wants_json():
        return json_error(status, error or default_error, message or default_message)
    try:
        body = render_template(
            "errors/error.html", status=status, message=message or default_message
        )
    except Exception:
        # The layout itself failed (a dependency down under it): a bare page, still no trace.
        log.warning("error page for %s rendered without its layout", status)
        body = FALLBACK_PAGE.format(status=status, message=escape(message or default_message))
    return Response(body, status=status, mimetype="text/html")


def _route() -> str:
    """The matched URL rule (``/activate/<token>``), never the path: paths carry link tokens."""
    rule = request.url_rule
    return rule.rule if rule is not None else "(aucune route)"


def database_error_name(exc: BaseException) -> str:
    """The error's classes and its code (SQLSTATE, SQLite's error name), never its text:
    a driver's message carries the statement's parameters. « OperationalError » alone did
    not tell a deadlock (40P01) from a restarting server (57P01) or a lost connection."""
    orig = getattr(exc, "orig", None)
    names = [type(exc).__name__]
    if orig is not None and type(orig).__name__ != names[0]:
        names.append(type(orig).__name__)
    code = getattr(orig or exc, "sqlstate", None) or getattr(orig or exc, "sqlite_errorname", None)
    if isinstance(code, str) and code.isascii() and len(code) <= 40:
        names.append(code)
    return " ".join(names)


def _outage(what: str) -> Response:
    """503 for a dependency that is down: no stack trace, and no further use of it.

    The page's layout asks who is logged in, which would query the database again: the
    browser is shown as anonymous on this one page.
    """
    log.warning("%s unavailable on %s %s", what, request.method, _route())
    with contextlib.suppress(Exception):
        db.session().rollback()
    g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined]
    return error_response(503)


def init_app(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        return json_error(exc.status, exc.error, exc.message)

    @app.errorhandler(CSRFError)
    def _csrf_error(_exc: CSRFError) -> Response:
        return error_response(
            400,
            "csrf_failed",
            "Le formulaire a expiré ou n'est pas valide. Rechargez la page et réessayez.",
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    # The database is unreachable, hung or restarting: a connection failed or was lost
    # (OperationalError, InterfaceError, the driver's own classes when raw driver connections
    # are used), or no pooled connection became free within the pool timeout.
    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeoutError)
    def _database_down(exc: Exception) -> Response:
        return _outage(f"database ({database_error_name(exc)})")

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError) -> Response:
        if exc.connection_invalidated or isinstance(exc.orig, DRIVER_UNAVAILABLE):
            return _outage(f"database ({database_error_name(exc)})")
        return _unexpected(exc)

    for driver_error in DRIVER_UNAVAILABLE:
        app.register_error_handler(driver_error, _database_down)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _redis_down(exc: Exception) -> Response:
        return _outage(f"redis ({type(exc).__name__})")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error on %s %s", request.method, _route())
        return error_response(InternalServerError.code)
