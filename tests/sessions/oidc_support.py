"""Helpers for the OpenID Connect tests: clients, the code flow over HTTP, token checks
with PyJWT (a JOSE library other than the provider's joserfc)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
from flask import Flask
from flask.testing import FlaskClient

from authserver.db import get_database
from authserver.models import Establishment, User, utcnow
from authserver.sessions.oidc.clients import create_client
from tests.conftest import Actions
from tests.services import free_port

REDIRECT = "https://csp.example.fr/callback"
ISSUER = "http://localhost:5000"  # AUTHSERVER_BASE_URL's default in tests
USERNAME = "martin.dupont"


@dataclass
class Client:
    client_id: str
    secret: str | None
    redirect_uri: str = REDIRECT

    @property
    def basic(self) -> dict[str, str]:
        assert self.secret
        raw = f"{self.client_id}:{self.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def auth(self) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, extra form fields) authenticating this client at the token endpoint."""
        if self.secret:
            return self.basic, {}
        return {}, {"client_id": self.client_id}


def register(app: Flask, **options: Any) -> Client:
    options.setdefault("name", "Kit CSP")
    options.setdefault("redirect_uris", [REDIRECT])
    with app.app_context(), get_database(app).session_scope() as session:
        created = create_client(session, **options)
        return Client(created.row.client_id, created.secret, options["redirect_uris"][0])


def certify(app: Flask, username: str = USERNAME, siret: str = "73282932000074") -> None:
    """Attach the user to an establishment and certify the account (as the other flows do)."""
    with get_database(app).session_scope() as session:
        from sqlalchemy import select

        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        if session.scalar(select(Establishment).where(Establishment.siret == siret)) is None:
            session.add(Establishment(siret=siret, siren=siret[:9], name="Boulangerie Dupont"))
        user.siret = siret
        user.certified_at = utcnow()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Flow:
    """One authorization request and what came back."""

    client: Client
    verifier: str
    params: dict[str, str]
    response: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str:
        return self.response.headers.get("Location", "")

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}

    @property
    def code(self) -> str:
        assert self.location.startswith(self.client.redirect_uri), (
            self.response.status_code,
            self.location,
            self.response.get_data(as_text=True)[:500],
        )
        return self.query["code"]


def authorize(
    http: FlaskClient,
    client: Client,
    *,
    scope: str = "openid profile email phone portal",
    pkce_method: str | None = "S256",
    **params: str,
) -> Flow:
    verifier, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    if pkce_method:
        query["code_challenge"] = challenge
        query["code_challenge_method"] = pkce_method
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    flow = Flow(client, verifier, query)
    flow.response = http.get("/oauth/authorize", query_string=query)
    return flow


def exchange(
    http: FlaskClient, flow: Flow, code: str | None = None, **overrides: str | None
) -> Any:
    headers, extra = flow.client.auth()
    data = {
        "grant_type": "authorization_code",
        "code": code or flow.code,
        "redirect_uri": flow.client.redirect_uri,
        "code_verifier": flow.verifier,
        **extra,
    }
    data.update(overrides)
    return http.post(
        "/oauth/token", data={k: v for k, v in data.items() if v is not None}, headers=headers
    )


def tokens(http: FlaskClient, client: Client, **params: str) -> dict[str, Any]:
    """A whole code flow for the logged-in browser ``http``; returns the token response."""
    flow = authorize(http, client, **params)
    answer = exchange(http, flow)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    data = answer.get_json()
    data["_flow"] = flow
    return data


def refresh(http: FlaskClient, client: Client, refresh_token: str) -> Any:
    headers, extra = client.auth()
    return http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
        headers=headers,
    )


def introspect(http: FlaskClient, client: Client, token: str, hint: str | None = None) -> dict:
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    answer = http.post("/oauth/introspect", data=data, headers=client.basic)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def userinfo(http: FlaskClient, access_token: str) -> Any:
    return http.get("/oauth/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def jwks(http: FlaskClient) -> dict[str, Any]:
    return http.get("/.well-known/jwks.json").get_json()


def verify_jwt(
    token: str, keys: dict[str, Any], audience: str, issuer: str = ISSUER, **options: Any
) -> dict[str, Any]:
    """Check a JWT with PyJWT against a JWKS document: signature, alg, kid, iss, aud, exp."""
    header = pyjwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    matching = [key for key in keys["keys"] if key["kid"] == header["kid"]]
    assert matching, f"kid {header['kid']} not on the JWKS"
    key = pyjwt.PyJWK.from_json(json.dumps(matching[0]))
    return pyjwt.decode(
        token,
        key=key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"], **options},
    )


def logged_in_actions(actions: Actions, username: str = USERNAME) -> Actions:
    actions.create_active_account(username)
    answer = actions.login(username)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return actions


class Receiver:
    """A service's back-channel logout endpoint: records tokens, can fail the first N posts.

    With ``hold``, every answer waits until ``release()`` (or 30 s): a test can then prove
    that something finished while the service had not answered yet, without a stopwatch."""

    def __init__(self, failures: int = 0, delay: float = 0.0, hold: bool = False) -> None:
        self.tokens: list[str] = []
        self.failures = failures
        self.delay = delay
        self.answered = 0
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self.port = free_port()
        self.event = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = parse_qs(self.rfile.read(length).decode())
                time.sleep(receiver.delay)
                receiver.released.wait(30)
                receiver.answered += 1
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.tokens.append(body["logout_token"][0])
                receiver.event.set()
                self.send_response(200)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backchannel-logout"

    def release(self) -> None:
        self.released.set()

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.tokens) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} logout token(s), got {len(self.tokens)}")
            time.sleep(0.05)
        return list(self.tokens)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
