"""The « Contrat de Sécurisation Professionnelle » kit: a separate portal service that logs
its users in through authserver (OpenID Connect, authorization code + PKCE, Authlib's Flask
client) and lets certified accounts download the four CSP documents.

Configuration (environment): CSPKIT_ISSUER (authserver's base URL), CSPKIT_CLIENT_ID,
CSPKIT_CLIENT_SECRET (empty for a public client), CSPKIT_BASE_URL (where this service is
reached, e.g. http://localhost:5001), optional CSPKIT_SECRET_KEY, CSPKIT_PORTAL_URL (the
espace the pages lead back to; CSPKIT_ISSUER + /espace by default), CSPKIT_SHOW_ID_TOKEN=1
(development: show the raw id_token and the login's acr/amr on the page).

The pages use the portal's design system: the DSFR files vendored in the repository's
static/vendor/dsfr, served here under /dsfr/.

``make run`` registers it and starts it beside authserver (examples/csp_kit/devserver.py);
by hand::

    .venv/bin/authserver client create --name "Kit CSP" --first-party \
        --redirect-uri http://localhost:5001/callback \
        --post-logout-redirect-uri http://localhost:5001/ \
        --backchannel-logout-uri http://localhost:5001/backchannel-logout
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import (
    Flask,
    Response,
    abort,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from examples.csp_kit.documents import BY_SLUG, DOCUMENTS, build_files, human_size

SCOPE = "openid profile email portal"
PASSKEY_ACR = "urn:authserver:passkey"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
CSP = (
    "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self' {issuer}; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
# The portal's design system, vendored once in the repository (static/vendor/dsfr).
DSFR_DIR = Path(__file__).resolve().parents[2] / "static" / "vendor" / "dsfr"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    issuer: str
    client_id: str
    client_secret: str | None
    base_url: str
    secret_key: str
    portal_url: str = ""
    show_id_token: bool = False

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def load_config(env: Mapping[str, str]) -> Config:
    def required(name: str) -> str:
        value = (env.get(name) or "").strip()
        if not value:
            raise ConfigError(f"{name} : variable obligatoire")
        return value

    issuer = required("CSPKIT_ISSUER").rstrip("/")
    base_url = required("CSPKIT_BASE_URL").rstrip("/")
    portal_url = (env.get("CSPKIT_PORTAL_URL") or "").strip() or f"{issuer}/espace"
    for name, value in (
        ("CSPKIT_ISSUER", issuer),
        ("CSPKIT_BASE_URL", base_url),
        ("CSPKIT_PORTAL_URL", portal_url),
    ):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name} : URL http(s) attendue, reçu {value!r}")
    return Config(
        issuer=issuer,
        client_id=required("CSPKIT_CLIENT_ID"),
        client_secret=(env.get("CSPKIT_CLIENT_SECRET") or "").strip() or None,
        base_url=base_url,
        secret_key=env.get("CSPKIT_SECRET_KEY") or secrets.token_urlsafe(32),
        portal_url=portal_url,
        show_id_token=(env.get("CSPKIT_SHOW_ID_TOKEN") or "") in ("1", "true", "yes"),
    )


@dataclass
class LocalSession:
    """What this service keeps about a login (server-side: tokens never go to the browser).

    ``lock`` serializes the refresh of this login's tokens: two downloads started together
    after the access token expired must not both present the same refresh token, or the
    provider sees a reuse and revokes the whole family (both requests would then fail).
    """

    claims: dict[str, Any]
    id_token: str
    token: dict[str, Any]
    checked_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class SessionStore:
    """In-memory sessions of this single-process example, findable by the provider's ``sid``."""

    def __init__(self) -> None:
        self._items: dict[str, LocalSession] = {}
        self._lock = threading.Lock()

    def add(self, item: LocalSession) -> str:
        key = secrets.token_urlsafe(24)
        with self._lock:
            self._items[key] = item
        return key

    def get(self, key: str | None) -> LocalSession | None:
        if not key:
            return None
        with self._lock:
            return self._items.get(key)

    def drop(self, key: str | None) -> None:
        with self._lock:
            self._items.pop(key or "", None)

    def drop_provider_session(self, sub: str | None, sid: str | None) -> int:
        with self._lock:
            doomed = [
                key
                for key, item in self._items.items()
                if (sid and item.claims.get("sid") == sid)
                or (not sid and sub and item.claims.get("sub") == sub)
            ]
            for key in doomed:
                del self._items[key]
        return len(doomed)


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    config = load_config(os.environ if env is None else env)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_NAME="cspkit_session",  # authserver may share the host: other names
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.base_url.startswith("https://"),
        CSPKIT=config,
    )
    files = build_files()
    # Each document with the weight of the bytes served, as the page shows it.
    listed = [(document, human_size(len(files[document.slug]))) for document in DOCUMENTS]
    store = SessionStore()
    app.extensions["cspkit.sessions"] = store

    oauth = OAuth(app)
    portal = oauth.register(
        "portal",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic" if config.client_secret else "none",
        },
    )

    app.extensions["cspkit.portal"] = portal

    def current() -> LocalSession | None:
        return store.get(session.get("local"))

    def csrf_token() -> str:
        """This browser's token for our own forms (kept in the signed session cookie)."""
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(24)
        return session["csrf"]

    app.jinja_env.globals["csrf_token"] = csrf_token
    # The espace of the portal: every page leads back to it (header, breadcrumb).
    app.jinja_env.globals["portal_url"] = config.portal_url

    def fresh_token(item: LocalSession) -> dict[str, Any] | None:
        """The login's access token, refreshed (once, under its lock) when it has expired."""
        with item.lock:
            token = item.token
            if token.get("expires_at", 0) > time.time() + 5:
                return token  # valid, or just refreshed by the request we waited for
            try:
                token = portal.fetch_access_token(
                    grant_type="refresh_token", refresh_token=token.get("refresh_token")
                )
            except OAuthError:
                return None
            item.token = token
            return token

    def still_valid(item: LocalSession) -> bool:
        """Ask the provider again (userinfo; refresh when the access token expired)."""
        token = fresh_token(item)
        if token is None:
            return False
        answer = portal.get(portal.load_server_metadata()["userinfo_endpoint"], token=token)
        if answer.status_code != 200:
            return False
        item.claims.update(answer.json())
        item.checked_at = time.time()
        return True

    @app.after_request
    def _headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            # Pages only: a PDF under object-src 'none' may not open in the browser's viewer.
            response.headers.setdefault("Content-Security-Policy", CSP.format(issuer=config.issuer))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/")
    def home() -> str:
        item = current()
        return render_template(
            "csp.html",
            user=item.claims if item else None,
            id_token=item.id_token if item and config.show_id_token else None,
            documents=listed,
        )

    @app.get("/en-savoir-plus")
    def more_info() -> str:
        """« Pour en savoir plus »: what the CSP is, for anyone (no login)."""
        item = current()
        return render_template("more_info.html", user=item.claims if item else None)

    @app.get("/dsfr/<path:filename>")
    def dsfr(filename: str) -> Response:
        response = send_from_directory(DSFR_DIR, filename, max_age=3600)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return dsfr("favicon/favicon.ico")

    @app.get("/login")
    def login() -> Response:
        extra = {"acr_values": PASSKEY_ACR} if request.args.get("stepup") == "1" else {}
        return portal.authorize_redirect(f"{config.base_url}/callback", **extra)

    @app.get("/callback")
    def callback() -> Response | tuple[str, int]:
        try:
            token = portal.authorize_access_token()
        except OAuthError as error:
            return render_template("error.html", error=error.error), 400
        claims = dict(token.pop("userinfo", {}) or {})
        item = LocalSession(claims=claims, id_token=token.get("id_token", ""), token=token)
        store.drop(session.get("local"))
        session.clear()
        session["local"] = store.add(item)
        return redirect(url_for("home"))

    @app.get("/documents/<slug>")
    def download(slug: str) -> Response:
        document = BY_SLUG.get(slug)
        if document is None:
            abort(404)
        item = current()
        if item is None:
            return redirect(url_for("login"))
        if not still_valid(item):
            store.drop(session.pop("local", None))
            return redirect(url_for("login"))
        if item.claims.get("certified") is not True:
            # The seed's message (certified space required, a counsellor will call), not a
            # bare error: the user may have followed a link straight to the document.
            page = render_template("csp.html", user=item.claims, id_token=None, documents=())
            return Response(page, status=403)
        # Inline: « Visualiser » opens it in the browser's viewer; the « Télécharger » link
        # asks the browser to save it (its download attribute).
        return Response(
            files[slug],
            mimetype="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{slug}.pdf"'},
        )

    @app.post("/logout")
    def logout() -> Response | tuple[str, int]:
        expected = session.get("csrf")
        given = request.form.get("csrf_token", "")
        if not expected or not hmac.compare_digest(expected, given):
            message = "Cette page a expiré : revenez à l'accueil et réessayez."
            return render_template("error.html", message=message), 400
        item = current()
        store.drop(session.pop("local", None))
        session.clear()
        if item is None:
            return redirect(url_for("home"))
        target = portal.create_logout_url(
            post_logout_redirect_uri=f"{config.base_url}/", id_token_hint=item.id_token
        )
        return redirect(target["url"])

    @app.post("/backchannel-logout")
    def backchannel_logout() -> tuple[str, int]:
        """OIDC Back-Channel Logout: the provider says a session ended; drop ours."""
        raw = request.form.get("logout_token", "")
        try:
            keys = KeySet.import_key_set(portal.fetch_jwk_set(force=True))
            decoded = jwt.decode(raw, keys, algorithms=["ES256"])
            claims = decoded.claims
            registry = jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": config.issuer},
                aud={"essential": True, "value": config.client_id},
                iat={"essential": True},
            )
            registry.validate(claims)
        except (JoseError, ValueError):
            return "", 400
        if BACKCHANNEL_EVENT not in (claims.get("events") or {}) or "nonce" in claims:
            return "", 400
        store.drop_provider_session(claims.get("sub"), claims.get("sid"))
        return "", 200

    return app
