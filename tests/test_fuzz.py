"""Fuzzing every URL rule through the whole WSGI stack (issue 11 « Proof »).

Thousands of malformed requests (bodies, headers, cookies, paths, query strings, methods;
tests/fuzz_requests.py) for every rule of ``app.url_map``, sent to the app as a server
sends them: through ``app.wsgi_app`` and so through the Host check and both fast paths
answered before Flask (forward-auth, the passkey login). Some come from anonymous
browsers, some from a logged-in employer (establishment attached, passkey, OIDC tokens),
some from a staff member on a passkey session, some from a returning browser (device
cookie, no session: the login fast path's case); many carry a valid CSRF token so that
they reach the views. Now and then a real passkey ceremony runs with a mutated assertion.

The bar: no answer of 500 or more, no exception out of the app, no ERROR log record and no
log record with a traceback. The generator is seeded: a failure prints the seed, the
request's index and the request itself (``AUTHSERVER_FUZZ_SEED`` / ``AUTHSERVER_FUZZ_COUNT``
replay or extend a run).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from logging import ERROR
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import run_wsgi_app

from authserver import settings_of
from authserver.alerts.console import api_tokens
from authserver.db import get_database
from authserver.models import (
    SECURITY_ACTIONS,
    AuthSession,
    CertificationRequest,
    Device,
    Membership,
    OutboxMail,
    SecurityEvent,
    User,
    WebAuthnCredential,
)
from authserver.sessions import store as session_store
from authserver.sessions.completion import AMR
from authserver.sessions.oidc.claims import session_sid
from tests.accounts.queued_jobs import wait_for_mail_jobs
from tests.conftest import PASSWORD, csrf_of
from tests.establishments.test_flow import active_establishments, attach, employer, staff
from tests.fuzz_requests import (
    Browser,
    FuzzRequest,
    Known,
    RequestFactory,
    Rule,
)
from tests.services import SMTPServer
from tests.sessions.oidc_support import (
    REDIRECT,
    Client,
    Flow,
    authorize,
    certify,
    pkce,
    register,
    tokens,
)
from tests.softauthn import SoftAuthenticator
from tests.staff_login import passkey_session

SEED = int(os.environ.get("AUTHSERVER_FUZZ_SEED", "20261211"))
COUNTS = {"sqlite": 10_000, "pg": 3_000}
REVIVE_EVERY = 100  # requests between two checks that the logged-in browsers still are
CEREMONY_RATE = 0.02
SET_COOKIE = re.compile(r"^([^=;]+)=([^;]*)")


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    error: str | None = None  # an exception out of the app, or what it wrote to wsgi.errors


def send(app: Flask, request: FuzzRequest) -> Answer:
    environ = request.environ()
    try:
        app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
        body = b"".join(app_iter)
    except Exception:
        return Answer(0, [], b"", "exception out of the app:\n" + traceback.format_exc())
    errors = environ["wsgi.errors"].getvalue()
    error = f"written to wsgi.errors:\n{errors}" if errors else None
    return Answer(int(status[:3]), list(headers.items()), body, error)


def update_cookies(browser: Browser, answer: Answer) -> None:
    """What a browser does with the answer's Set-Cookie headers."""
    for name, value in answer.headers:
        if name.lower() != "set-cookie":
            continue
        match = SET_COOKIE.match(value)
        if match is None:
            continue
        cookie, content = match.group(1).strip(), match.group(2)
        if "Max-Age=0" in value or "Expires=Thu, 01 Jan 1970" in value:
            browser.cookies.pop(cookie, None)
        else:
            browser.cookies[cookie] = content


def plain(
    method: str, path: str, browser: Browser, body: bytes = b"", **headers: str
) -> FuzzRequest:
    """A well-formed request of ``browser`` (setup steps, ceremonies)."""
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    all_headers = {"Host": "localhost", "Content-Length": str(len(body)), **headers}
    if cookie:
        all_headers["Cookie"] = cookie
    return FuzzRequest(
        method,
        path.encode(),
        b"",
        tuple(all_headers.items()),
        body,
        "127.0.0.1",
        path,
        browser.name,
    )


def cookies_of(client: Any) -> dict[str, str]:
    found = {}
    for name in ("authserver_session", "authserver_device", "authserver_flask"):
        cookie = client.get_cookie(name)
        if cookie is not None:
            found[name] = cookie.value
    return found


@dataclass
class Account:
    """A logged-in browser the run keeps logged in (the fuzzer logs it out now and then)."""

    browser: Browser
    username: str
    amr: str = "passkey"
    revived: int = 0

    def revive(self, app: Flask) -> list[tuple[FuzzRequest, Answer]]:
        """Log in again if the session was ended (POST /logout with a valid token, a lock
        from the console...): a new session row, as a login writes it, and a new CSRF token
        (bound to the session). Returns the requests it sent, judged as the others; an
        account the fuzzer deleted stays gone (its browser goes on without a session)."""
        check = plain("GET", "/auth/verify", self.browser)
        verdict = send(app, check)
        sent = [(check, verdict)]
        if verdict.status != 200:
            with get_database(app).session_scope() as session:
                user = session.scalar(select(User).where(User.username == self.username))
                if user is None:
                    self.browser.cookies.pop("authserver_session", None)
                    return sent
                user.locked_at = None
                device = session.scalar(select(Device.id).where(Device.user_id == user.id))
                token, row = session_store.new_session_row(
                    user.id,
                    method=self.amr,
                    amr=AMR[self.amr],
                    ip="127.0.0.1",
                    user_agent="fuzz",
                    lifetimes=session_store.Lifetimes(
                        idle=settings_of(app).session_idle,
                        absolute=settings_of(app).session_absolute,
                    ),
                    device_id=device,
                )
                session.execute(session_store.OPEN, row)
            self.browser.cookies["authserver_session"] = token
            self.revived += 1
        listing = plain("GET", "/account/sessions", self.browser)
        page = send(app, listing)
        update_cookies(self.browser, page)
        if page.status == 200:
            self.browser.csrf = csrf_of(page.body.decode())
        return [*sent, (listing, page)]


@dataclass
class Site:
    """The app under test with its browsers, accounts and real values."""

    app: Flask
    browsers: list[Browser]
    accounts: list[Account]
    known: Known
    authenticator: SoftAuthenticator
    returning: Browser  # the employer's device cookie, no session
    stats: Counter[str] = field(default_factory=Counter)
    seen: int = 0  # log records judged so far
    routes: Counter[str] = field(default_factory=Counter)  # rule, browser, status


def build_site(app: Flask, smtp: SMTPServer) -> Site:
    """An employer administering an establishment (certified, passkey, OIDC tokens), a
    colleague asking to join it, an admin on a passkey session, OIDC clients, an alert."""
    boss = employer(app, smtp, "martin.dupont")
    siret = active_establishments()[0].siret
    assert attach(boss, siret).status_code == 302
    colleague = employer(app, smtp, "paul.martin")
    assert attach(colleague, siret).status_code == 302  # pending the boss's decision
    authenticator = passkey_session(app, boss.client)
    certify(app, "martin.dupont", siret)
    clients = [
        register(app, name="Kit CSP", first_party=True),
        register(app, name="Appli publique", public=True),
    ]
    granted = tokens(boss.client, clients[0])
    pending = authorize(boss.client, clients[0])  # a live code for the token endpoint
    admin = staff(app, smtp, "camille.admin", "admin")
    known = known_values(app, siret, clients, granted, pending)

    anonymous = Browser("anonymous")
    with_form = Browser("anonymous+csrf")
    login_page = send(app, plain("GET", "/login", with_form))
    update_cookies(with_form, login_page)
    with_form.csrf = csrf_of(login_page.body.decode())
    boss_browser = Browser("employer", cookies_of(boss.client))
    admin_browser = Browser("admin", cookies_of(admin.client))
    returning = Browser(
        "returning", {k: v for k, v in boss_browser.cookies.items() if k != "authserver_session"}
    )
    accounts = [Account(boss_browser, "martin.dupont"), Account(admin_browser, "camille.admin")]
    for account in accounts:
        account.revive(app)
        assert account.browser.csrf and "authserver_session" in account.browser.cookies
    browsers = [anonymous, anonymous, with_form, returning, boss_browser, boss_browser]
    browsers.append(admin_browser)
    return Site(app, browsers, accounts, known, authenticator, returning)


def known_values(
    app: Flask, siret: str, clients: list[Client], granted: dict[str, Any], pending: Flow
) -> Known:
    """Real values for the generator: tokens, ids, and a valid parameter set per rule."""
    confidential, public = clients
    with get_database(app).session_scope() as session:
        boss = session.scalar(select(User).where(User.username == "martin.dupont"))
        admin = session.scalar(select(User).where(User.username == "camille.admin"))
        assert boss is not None and admin is not None
        session.add(SecurityEvent(kind="new_device", severity="low", user_id=boss.id))
        api_token = api_tokens.create(session, user=admin, name="fuzz")
        session.flush()
        ids = {
            "passkey_id": select(WebAuthnCredential.id),
            "membership_id": select(Membership.id),
            "request_id": select(CertificationRequest.id),
            "alert_id": select(SecurityEvent.id),
            "mail_id": select(OutboxMail.id),
        }
        segments = {name: [str(i) for i in session.scalars(query)] for name, query in ids.items()}
        segments["sid"] = [session_sid(row) for row in session.scalars(select(AuthSession.id_hash))]
    known = Known(segments=segments)
    known.segments["client_id"] = [confidential.client_id, public.client_id]
    known.segments["decision"] = ["grant", "refuse", "remove", "certify", "reject"]
    known.segments["action"] = list(SECURITY_ACTIONS)
    known.segments["reference"] = ["ref-1"]
    known.bearer += [granted["access_token"], api_token]
    known.basic.append((confidential.client_id, confidential.secret or ""))
    for name, values in {
        "username": ["martin.dupont", "camille.admin", "paul.martin"],
        "email": ["martin.dupont@entreprise.fr", "nouveau@entreprise.fr"],
        "siret": [siret, "73282932000074"],
        "client_id": [confidential.client_id, public.client_id],
        "client_secret": [confidential.secret or ""],
        "redirect_uri": [REDIRECT],
        "post_logout_redirect_uri": [REDIRECT],
        "response_type": ["code", "code id_token", "token"],
        "scope": ["openid profile email phone portal", "openid", "admin"],
        "grant_type": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_method": ["S256", "plain"],
        "prompt": ["none", "login", "consent"],
        "code": [pending.code],
        "code_verifier": [pending.verifier],
        "refresh_token": [granted["refresh_token"]],
        "token": [granted["access_token"], granted["refresh_token"]],
        "token_type_hint": ["access_token", "refresh_token"],
        "id_token_hint": [granted["id_token"]],
        "access_token": [granted["access_token"]],
        "method": ["password", "passkey", "online", "counselor"],
        "civility": ["monsieur", "madame"],
        "cgu": ["y"],
        "confirm": ["y", "1", "yes"],
        "decision": ["allow", "deny"],
        "outcome": ["approved", "refused", "abandoned", "success", "failure"],
        "next": ["/espace", "/account", "http://localhost:5000/account"],
        "mediation": ["conditional", "optional"],
        "limit": ["1", "100", "0", "-1"],
    }.items():
        known.add(name, *values)
    secret = confidential.secret or ""
    client_auth = [("client_id", confidential.client_id), ("client_secret", secret)]
    authorization = [
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email"),
        ("state", "etat"),
        ("nonce", "nonce"),
        ("code_challenge", pkce()[1]),
        ("code_challenge_method", "S256"),
    ]
    known.templates = {
        "/oauth/authorize": [
            [("client_id", client.client_id), *authorization] for client in clients
        ],
        "/oauth/token": [
            [
                ("grant_type", "refresh_token"),
                ("refresh_token", granted["refresh_token"]),
                *client_auth,
            ],
            [
                ("grant_type", "authorization_code"),
                ("code", pending.code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", pending.verifier),
                *client_auth,
            ],
        ],
        "/oauth/introspect": [[("token", granted["access_token"]), *client_auth]],
        "/oauth/revoke": [[("token", granted["access_token"]), *client_auth]],
        "/oauth/logout": [
            [
                ("id_token_hint", granted["id_token"]),
                ("post_logout_redirect_uri", REDIRECT),
                ("state", "etat"),
                ("client_id", confidential.client_id),
            ]
        ],
        "/login": [[("username", "martin.dupont"), ("password", "pas le bon mot de passe")]],
        "/signup": [
            [
                ("username", "nouvel.employeur"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
                ("civility", "madame"),
                ("last_name", "Durand"),
                ("first_name", "Claire"),
                ("email", "claire.durand@entreprise.fr"),
                ("phone", "07 12 34 56 78"),
                ("cgu", "y"),
            ]
        ],
        "/password/forgot": [[("username", "martin.dupont")], [("email", "x@entreprise.fr")]],
        "/activate/resend": [[("username", "paul.martin")]],
        "/account": [[("civility", "madame"), ("last_name", "Dupont"), ("first_name", "Marie")]],
        "/account/email": [[("email", "nouveau@entreprise.fr"), ("password", "faux")]],
        "/account/passkeys/<int:passkey_id>/rename": [[("name", "Clé du bureau")]],
        "/establishment": [[("siret", siret)]],
        "/certification": [[("method", "counselor")], [("method", "online")]],
        "/dev/identity/<reference>": [[("outcome", "approved")]],
        "/counselor/requests/<int:request_id>/<decision>": [[("reason", "Pièce illisible")]],
        "/security/alerts/<int:alert_id>/actions/<action>": [[("note", "vu")]],
        "/security/events": [[("outcome", "failure"), ("limit", "10")]],
        "/api/security/events": [[("limit", "10")]],
        "/api/security/alerts": [[("limit", "10")]],
        "/webauthn/login/options": [[("username", "martin.dupont")], []],
        "/webauthn/register/options": [[("name", "Clé")]],
        "/passkeys/offer": [[("next", "/espace")]],
    }
    return known


def mutate(rng: random.Random, factory: RequestFactory, value: Any, depth: int = 0) -> Any:
    """The same JSON with one member replaced by garbage (or removed)."""
    if isinstance(value, dict) and value and depth < 3 and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        copy = dict(value)
        if rng.random() < 0.15:
            del copy[key]
        else:
            copy[key] = mutate(rng, factory, value[key], depth + 1)
        return copy
    if isinstance(value, str) and rng.random() < 0.5:
        cut = rng.randrange(len(value) + 1)
        return (
            value[:cut] + rng.choice(["A", "_", "=", "\x00", "\ud800", "é", ""]) + value[cut + 1 :]
        )
    return factory.json_value("", 2)


def ceremony(
    site: Site, rng: random.Random, factory: RequestFactory
) -> list[tuple[FuzzRequest, Answer]]:
    """A passkey login: real options, then the authenticator's assertion, often mutated.

    From the returning browser an untouched assertion is the login fast path's own case; a
    mutated one is handed to the view. Both requests are judged as the others are."""
    browser = Browser("ceremony", dict(rng.choice([site.returning, *site.browsers]).cookies))
    json_type = {"Content-Type": "application/json"}
    options_request = plain("POST", "/webauthn/login/options", browser, b"{}", **json_type)
    options = send(site.app, options_request)
    sent = [(options_request, options)]
    if options.status != 200:
        return sent
    update_cookies(browser, options)
    try:
        credential = site.authenticator.assert_(json.loads(options.body))
    except LookupError:  # the fuzzer deleted the passkey
        return sent
    body: Any = {"credential": credential}
    if rng.random() < 0.2:
        body["next"] = factory.text("next")
    if rng.random() < 0.6:
        body = mutate(rng, factory, body)
    raw = json.dumps(body).encode("utf-8", "surrogatepass")
    verify_request = plain("POST", "/webauthn/login/verify", browser, raw, **json_type)
    verify = send(site.app, verify_request)
    site.stats[f"ceremony verify {verify.status}"] += 1
    return [*sent, (verify_request, verify)]


def judge(request: FuzzRequest, answer: Answer, records: list[logging.LogRecord]) -> str | None:
    problems = []
    if answer.error:
        problems.append(answer.error)
    elif answer.status >= 500:
        problems.append(f"status {answer.status}: {answer.body[:300]!r}")
    for record in records:
        if record.levelno >= logging.ERROR or record.exc_info:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            problems.append(f"log {record.levelname} {record.name}: {text}")
    if not problems:
        return None
    return "\n".join(problems) + "\n" + request.describe()


def distinct(failures: list[str]) -> list[str]:
    """One failure per kind: its first problem line and the innermost frame of its trace."""
    kinds: dict[tuple[str, str], str] = {}
    for failure in failures:
        lines = failure.splitlines()
        frames = [line for line in lines if line.strip().startswith("File ")]
        key = (re.sub(r"#\d+", "", lines[1])[:80], frames[-1] if frames else "")
        kinds.setdefault(key, failure)
    return list(kinds.values())


def fuzz(site: Site, count: int, seed: int, caplog: pytest.LogCaptureFixture) -> list[str]:
    rng = random.Random(seed)
    rules = [Rule.of(rule) for rule in sorted(site.app.url_map.iter_rules(), key=str)]
    factory = RequestFactory(rng, rules, site.browsers, site.known)
    failures: list[str] = []
    sent = 0

    def check(request: FuzzRequest, answer: Answer, label: str) -> None:
        records = caplog.records[site.seen :]
        site.seen = len(caplog.records)
        problem = judge(request, answer, records)
        if problem:
            failures.append(f"{label} (seed {seed}):\n{problem}")

    site.seen = len(caplog.records)
    while sent < count:
        if sent // REVIVE_EVERY != (sent - 1) // REVIVE_EVERY:
            for account in site.accounts:
                for request, answer in account.revive(site.app):
                    check(request, answer, f"keeping {account.username} logged in, #{sent}")
        if rng.random() < CEREMONY_RATE:
            pairs = ceremony(site, rng, factory)
        else:
            request = factory.request()
            pairs = [(request, send(site.app, request))]
        for request, answer in pairs:
            sent += 1
            site.stats[f"{answer.status // 100}xx"] += 1
            site.stats[f"browser {request.browser}"] += 1
            site.routes[f"{request.rule} {request.browser} {answer.status}"] += 1
            check(request, answer, f"request #{sent}")
    return failures


@pytest.fixture
def fuzz_site(backend_app: Flask, smtp: SMTPServer) -> Site:
    return build_site(backend_app, smtp)


def test_no_request_gets_a_server_error(
    request: pytest.FixtureRequest, fuzz_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    backend = request.node.callspec.params["backend_app"]
    count = int(os.environ.get("AUTHSERVER_FUZZ_COUNT", COUNTS[backend]))
    caplog.handler.setLevel(logging.WARNING)  # the app's own log levels stay as they are
    started = time.perf_counter()
    failures = fuzz(fuzz_site, count, SEED, caplog)
    wait_for_mail_jobs(fuzz_site.app, timeout=30)  # the mail worker's own errors too
    after = judge(
        plain("GET", "/", Browser("after the run")),
        Answer(200, [], b""),
        caplog.records[fuzz_site.seen :],
    )
    if after:
        failures.append(f"logged after the last request (mail worker):\n{after}")
    elapsed = time.perf_counter() - started
    summary = (
        f"{backend}: {count} requests in {elapsed:.1f} s, seed {SEED}; "
        f"revived {[a.revived for a in fuzz_site.accounts]}; "
        f"{dict(sorted(fuzz_site.stats.items()))}"
    )
    print(summary)
    if os.environ.get("AUTHSERVER_FUZZ_VERBOSE"):  # tuning the generator: what it reaches
        for line in sorted(fuzz_site.routes.items()):
            print(*line)
        warnings = Counter(r.getMessage()[:150] for r in caplog.records if r.levelno < ERROR)
        print(warnings.most_common())
    if failures:
        shown = "\n\n".join(distinct(failures)[:10])
        pytest.fail(
            f"{len(failures)} failing requests, {len(distinct(failures))} kinds; {summary}\n"
            f"replay: AUTHSERVER_FUZZ_SEED={SEED} AUTHSERVER_FUZZ_COUNT={count}\n\n{shown}",
            pytrace=False,
        )
