"""Web hygiene shared by every page: CSRF, security headers, client address, template globals."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, current_app, request
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect, generate_csrf
from werkzeug.routing import IntegerConverter, ValidationError
from werkzeug.sansio.http import parse_cookie

from authserver.config import Settings, is_loopback_host
from authserver.models import MAX_ID
from authserver.plural import plural

csrf = CSRFProtect()

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)


PARIS = ZoneInfo("Europe/Paris")


def paris_time(moment: datetime) -> str:
    """A UTC time as people in France read it: 26/11/2026 à 17:45 (heure de Paris)."""
    return moment.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M") + " (heure de Paris)"


class BaseForm(FlaskForm):
    """Every form of the app: fields are read from the urlencoded/multipart *text* parts only.

    Flask-WTF's default also merges ``request.files`` and JSON bodies into the form data, so
    a text field could arrive as a file part or a JSON number and reach code expecting a
    ``str``. Here a file part or a JSON body simply leaves the field empty.
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is not None and not hasattr(formdata, "getlist"):
                # Flask-WTF's "not given" marker: read the current request's text fields.
                return request.form if form.is_submitted() else None
            return formdata


def settings() -> Settings:
    return current_app.config["AUTHSERVER"]


# Header values arrive decoded as Latin-1: its control characters (C0, DEL, C1) and the soft
# hyphen are all the invisible ones. Stored and logged values never carry them (PostgreSQL
# refuses NUL; escapes would forge log lines or terminal output).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\xad]")


def clean_ip(remote_addr: str | None) -> str:
    return _CONTROL.sub("", remote_addr or "")[:45]


def clean_user_agent(header: str | None) -> str:
    return _CONTROL.sub("", header or "")[:512]


_PLAIN_COOKIE = re.compile(r"[A-Za-z0-9._\-]*")


def read_cookies(header: str) -> dict[str, str]:
    """A ``Cookie`` header's cookies exactly as Flask's ``request.cookies`` reads them (the
    first of a name wins), for the fast paths answered before Flask: they and the views they
    hand over to see the same cookies. Ours are plain tokens, read here; a header with
    anything else (quotes, escapes, spaces inside a value, non-ASCII) is werkzeug's to read.

    The header is the ``str`` WSGI gives (each byte one latin-1 character), read as is, as
    ``request.cookies`` does: never decoded as UTF-8 (``werkzeug.http.parse_cookie`` does,
    and raised on any other cookie's stray byte, 0xff or a latin-1 « é »)."""
    found: dict[str, str] = {}
    if header.isascii():
        for part in header.split(";"):
            name, _, value = part.partition("=")
            name = name.strip()
            if name and name not in found:
                found[name] = value = value.strip()
                if not _PLAIN_COOKIE.fullmatch(value):
                    break
        else:
            return found
    return dict(parse_cookie(header).items())


def plain_cookie_value(value: str) -> bool:
    """A value written without quoting (base64url, itsdangerous output)."""
    return _PLAIN_COOKIE.fullmatch(value) is not None


def client_ip() -> str:
    """The peer address; a reverse proxy in front is trusted through ProxyFix only."""
    return clean_ip(request.remote_addr)


def is_local_request() -> bool:
    """A browser or tool on this very machine, not a request relayed from elsewhere.

    Development pages (mailbox, identity provider) and ``/metrics`` without a token answer
    only these. A proxy on this machine relays outside requests from a loopback address:
    with AUTHSERVER_TRUSTED_PROXIES the forwarded client address is the one checked
    (ProxyFix), without it any forwarding header means « not local ».
    """
    if not is_loopback_host(request.remote_addr or ""):
        return False
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    return not forwarded or bool(settings().trusted_proxies)


def user_agent() -> str:
    return clean_user_agent(request.headers.get("User-Agent"))


def security_headers(path: str, *, https: bool) -> list[tuple[str, str]]:
    """The headers every answer carries unless its view set its own (pages, API, fast paths)."""
    headers = [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ]
    if https:
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    if not path.startswith("/static/"):
        headers.append(("Cache-Control", "no-store"))
    return headers


class DatabaseIntConverter(IntegerConverter):
    """``<int:...>`` for every route: ASCII digits whose value a database id can hold.

    Werkzeug's converter takes any ``\\d+`` (other scripts' digits included) of any size;
    a value past 64 bits reached SQLite as an OverflowError (a 500), and one past 32 bits
    PostgreSQL as « integer out of range », in every view that looks an id up. Our ids are
    INTEGER columns (``models.MAX_ID``): out of that range, the URL matches no route: 404.
    """

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if not 0 <= number <= MAX_ID:
            raise ValidationError()
        return number


def init_app(app: Flask) -> None:
    """Called before any blueprint is registered: routes bind their converters when added."""
    app.url_map.converters["int"] = DatabaseIntConverter
    csrf.init_app(app)
    is_https = app.config["AUTHSERVER"].secure_cookies

    pages = security_headers("/", https=is_https)
    static = security_headers("/static/", https=is_https)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in static if request.path.startswith("/static/") else pages:
            headers.setdefault(name, value)
        return response

    app.add_template_filter(paris_time, "paris_time")
    app.add_template_filter(plural, "plural")

    @app.context_processor
    def _globals() -> dict[str, object]:
        return {"csrf_token": generate_csrf, "dev_mailbox": app.config["AUTHSERVER"].console_mail}
