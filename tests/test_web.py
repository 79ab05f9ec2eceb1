"""Web hygiene: CSRF on every form, security headers, health endpoints, error pages."""

from __future__ import annotations

import io
import logging
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from authserver.db import get_database
from authserver.models import ActionToken, AuthSession, LoginEvent, OutboxMail, User
from tests.conftest import PASSWORD, Actions, csrf_of, fresh_pg_url, link_in, path_of
from tests.services import text_of


def logged_in(client) -> bool:
    """Whether this browser has a live session: /espace (or onboarding) rather than /login."""
    response = client.get("/espace")
    if response.status_code == 200:
        return True
    assert response.status_code in (302, 303), response.status_code
    return urlsplit(response.location).path != "/login"


def count(app, model, *where) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def snapshot(app) -> dict[str, object]:
    """Everything a form could change."""
    with get_database(app).session_scope() as session:
        users = session.execute(
            select(User.username_key, User.password_hash, User.activated_at, User.locked_at)
        ).all()
        sessions = session.execute(select(AuthSession.id_hash, AuthSession.revoked_at)).all()
        tokens = session.execute(select(ActionToken.id_hash, ActionToken.used_at)).all()
    return {
        "users": sorted(map(tuple, users)),
        "sessions": sorted(map(tuple, sessions)),
        "tokens": sorted(map(tuple, tokens)),
        "events": count(app, LoginEvent),
        "mails": count(app, OutboxMail),
    }


# --------------------------------------------------------------------------- CSRF


@pytest.fixture
def world(app, smtp):
    """An active, logged-in user (with its browser) and an inactive account; a reset link."""
    owner = Actions(app.test_client(), smtp)
    owner.create_active_account()
    assert owner.signup("paul.martin").status_code == 302
    assert owner.login().status_code == 302
    csrf = owner.csrf("/password/forgot")
    owner.client.post("/password/forgot", data={"csrf_token": csrf, "username": "martin.dupont"})
    resets = [m for m in smtp.wait_for(3) if "/password/reset/" in text_of(m)]
    reset = path_of(link_in(resets[0], "/password/reset/"))
    return owner, reset


def form_posts(reset_path: str) -> list[tuple[str, dict[str, str]]]:
    new = "un tout nouveau mot de passe 2026"
    return [
        (
            "/signup",
            {
                "username": "nouveau.compte",
                "password": PASSWORD,
                "password_confirm": PASSWORD,
                "civility": "madame",
                "last_name": "Durand",
                "first_name": "Jeanne",
                "email": "jeanne@entreprise.fr",
                "phone": "0612345678",
                "cgu": "y",
            },
        ),
        ("/login", {"username": "martin.dupont", "password": PASSWORD}),
        ("/logout", {}),
        ("/password/forgot", {"username": "martin.dupont"}),
        (reset_path, {"password": new, "password_confirm": new}),
        ("/activate/resend", {"username": "paul.martin"}),
        ("/activate/resend-from-login", {"username": "paul.martin"}),
    ]


@pytest.mark.parametrize("token", ["missing", "empty", "forged", "another browser's"])
def test_every_form_post_without_a_valid_token_is_refused_and_changes_nothing(app, world, token):
    owner, reset = world
    stranger = app.test_client()
    strangers_token = csrf_of(stranger.get("/login").get_data(as_text=True))
    before = snapshot(app)
    for path, data in form_posts(reset):
        if token == "empty":
            data = {**data, "csrf_token": ""}
        elif token == "forged":
            data = {
                **data,
                "csrf_token": "IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAi.x.y",
            }
        elif token == "another browser's":
            data = {**data, "csrf_token": strangers_token}
        response = owner.client.post(path, data=data)
        assert response.status_code == 400, (path, response.status_code)
        body = response.get_data(as_text=True)
        assert "Traceback" not in body
        assert "formulaire" in body  # a French explanation
        assert "authserver_session=" not in " ".join(response.headers.getlist("Set-Cookie"))
    assert snapshot(app) == before
    # Still logged in: the logout without a token did nothing.
    assert logged_in(owner.client)


# Exceptions: the anonymous login ceremony is bound to the browser (contract), and the
# OAuth/OIDC protocol endpoints authenticate a client or a bearer token, never the cookie.
CSRF_EXEMPT = (
    "/webauthn/login/",
    "/oauth/token",
    "/oauth/userinfo",
    "/oauth/revoke",
    "/oauth/introspect",
    "/oauth/logout",
    # Server to server, signed by the identity provider (its own test checks the signature).
    "/certification/webhook",
)


def test_every_post_route_wants_a_csrf_token(app, smtp):
    """Every POST route of the app, forms and logged-in JSON calls alike (logged in here)."""
    user = Actions(app.test_client(), smtp)
    user.create_active_account()
    assert user.login().status_code == 302
    checked = []
    for rule in app.url_map.iter_rules():
        if (
            "POST" not in rule.methods
            or rule.rule in CSRF_EXEMPT
            or rule.rule.startswith(CSRF_EXEMPT[0])
        ):
            continue
        path = re.sub(r"<int:\w+>", "1", rule.rule)
        path = re.sub(r"<(?:\w+:)?\w+>", "x", path)
        for kwargs in ({"data": {}}, {"json": {}}):
            response = user.client.post(path, **kwargs)
            assert response.status_code == 400, (rule.rule, kwargs, response.status_code)
        checked.append(rule.rule)
    assert "/login" in checked and "/logout" in checked
    assert logged_in(user.client)


def test_the_form_with_its_token_works(app, client, actions):
    """Control for the test above: the same form with its token is accepted."""
    actions.create_active_account()
    assert actions.login().status_code == 302


# --------------------------------------------------------------------------- headers


def csp_directives(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


@pytest.mark.parametrize("path", ["/login", "/signup", "/password/forgot", "/nope", "/healthz"])
def test_security_headers(client, path):
    response = client.get(path)
    csp = csp_directives(response.headers["Content-Security-Policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    script = csp.get("script-src", csp.get("default-src"))
    style = csp.get("style-src", csp.get("default-src"))
    assert script and style
    for sources in (script, style, csp["default-src"]):
        assert "'unsafe-inline'" not in sources
        assert "'unsafe-eval'" not in sources
        assert "*" not in sources
    assert csp["object-src"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in (
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
        "no-referrer",
    )
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP here


def test_hsts_on_https(make_app):
    app = make_app(AUTHSERVER_BASE_URL="https://entreprise.example.fr")
    response = app.test_client().get("/login", base_url="https://entreprise.example.fr")
    hsts = response.headers["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 180 * 24 * 3600


def test_pages_have_no_inline_script_or_style(app, client, actions):
    """The CSP forbids them, so a page that relied on them would be broken."""
    actions.create_active_account()
    pages = ["/login", "/signup", "/password/forgot", "/activate/resend", "/cgu", "/nope"]
    bodies = [client.get(path).get_data(as_text=True) for path in pages]
    assert actions.login().status_code == 302
    bodies.append(client.get("/espace", follow_redirects=True).get_data(as_text=True))
    for body in bodies:
        for tag in re.findall(r"<script\b[^>]*>", body, re.I):
            assert "src=" in tag, tag
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", body, re.I)
        assert not re.search(r"\sstyle\s*=", body, re.I)
        assert not re.search(r"\son[a-z]+\s*=", body, re.I)
        assert "javascript:" not in body.lower()


def test_pages_never_cached(client):
    assert "no-store" in client.get("/login").headers.get("Cache-Control", "")


# --------------------------------------------------------------------------- health


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200


def test_readyz_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_503_when_the_sqlite_database_cannot_be_opened(make_app, tmp_path):
    app = make_app(f"sqlite:///{tmp_path}/absent/dir/authserver.db", AUTHSERVER_MAIL_WORKER="0")
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # alive, touches no database
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] != "ok"


@pytest.mark.pg
def test_readyz_503_when_postgresql_goes_away(make_app, postgres, pg_template):
    url = fresh_pg_url(postgres, pg_template)
    app = make_app(url)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    postgres.drop_database(url.rsplit("/", 1)[1])  # terminates the app's connections too
    response = client.get("/readyz")
    assert response.status_code == 503
    assert client.get("/healthz").status_code == 200


def test_database_down_gives_a_french_error_page_not_a_traceback(make_app, tmp_path):
    app = make_app(f"sqlite:///{tmp_path}/absent/dir/authserver.db", AUTHSERVER_MAIL_WORKER="0")
    client = app.test_client()
    csrf = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"csrf_token": csrf, "username": "martin.dupont", "password": PASSWORD}
    )
    assert response.status_code in (500, 503)
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    assert "sqlite3" not in body.lower()
    assert "OperationalError" not in body
    assert 'lang="fr"' in body
    assert "Veuillez réessayer" in body or "indisponible" in body


# --------------------------------------------------------------------------- errors


def test_404_page_in_french_without_stack_trace(client):
    response = client.get("/cette/page/nexiste/pas")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert 'lang="fr"' in body
    assert "La page demandée n'existe pas" in body.replace("&#39;", "'")
    assert "Traceback" not in body
    assert "werkzeug" not in body.lower()
    assert 'href="/"' in body  # a way back


def test_405_page(client):
    response = client.post("/healthz")
    assert response.status_code in (400, 405)
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/api/inconnu", "/api/v1/users/1"])
def test_unknown_api_path_answers_json(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json
    body = response.get_json()
    assert body["error"] == "not_found"
    assert isinstance(body["message"], str) and "existe" in body["message"]
    assert set(body) == {"error", "message"}


# --------------------------------------------------------------------------- form input


def form_fields(reset_path: str) -> list[tuple[str, str]]:
    return [(path, name) for path, data in form_posts(reset_path) for name in data]


def test_every_form_reads_text_fields_only(app, world):
    """A text field sent as a multipart file part (or a JSON body) is an empty field, not a 500."""
    owner, reset = world
    cases = form_fields(reset)
    assert len(cases) > 15 and {path for path, _ in cases} >= {"/login", "/signup", reset}
    for path, name in cases:
        data = dict(dict(form_posts(reset))[path])
        data["csrf_token"] = owner.csrf()
        data[name] = (io.BytesIO(b"martin.dupont"), "champ.txt")
        response = owner.client.post(path, data=data, content_type="multipart/form-data")
        assert response.status_code < 500, (path, name, response.status_code)
        assert "Traceback" not in response.get_data(as_text=True)
    for path, data in form_posts(reset):
        body = {**data, "csrf_token": owner.csrf(), "username": 5, "email": ["x"]}
        response = owner.client.post(path, json=body)
        assert response.status_code == 400, (path, response.status_code)


def test_every_form_class_reads_text_fields_only(app):
    """Forms of every package: each FlaskForm of the app derives from the shared BaseForm."""
    from flask_wtf import FlaskForm

    from authserver.web import BaseForm

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    forms = [cls for cls in subclasses(FlaskForm) if cls.__module__.startswith("authserver.")]
    assert forms, "no form found"
    assert [cls for cls in forms if cls is not BaseForm and not issubclass(cls, BaseForm)] == []


# --------------------------------------------------------------------------- secrets in logs

TOKEN = "ceci-est-un-jeton-secret-0123456789abcdef"


def test_an_outage_is_logged_with_the_route_not_the_token(make_app, tmp_path, caplog):
    app = make_app(f"sqlite:///{tmp_path}/absent/dir/authserver.db", AUTHSERVER_MAIL_WORKER="0")
    with caplog.at_level(logging.WARNING, logger="authserver.errors"):
        response = app.test_client().get(f"/activate/{TOKEN}")
    assert response.status_code == 503
    assert "/activate/<token>" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("path", "target"),
    [
        (f"/activate/{TOKEN}", "authserver.accounts.service.activate"),
        (f"/password/reset/{TOKEN}", "authserver.accounts.service.reset_user_of"),
    ],
)
def test_an_unexpected_error_is_logged_with_the_route_not_the_token(
    app, client, caplog, monkeypatch, path, target
):
    def broken(*_args, **_kwargs):
        raise RuntimeError("panne simulée")

    monkeypatch.setattr(target, broken)
    with caplog.at_level(logging.ERROR, logger="authserver.errors"):
        response = client.get(path)
    assert response.status_code == 500
    assert "Traceback" not in response.get_data(as_text=True)
    assert path.rsplit("/", 1)[0] + "/<token>" in caplog.text
    assert TOKEN not in caplog.text


# --------------------------------------------------------------------------- dev mailbox


@pytest.mark.parametrize(
    ("remote", "headers", "status"),
    [
        ("127.0.0.1", {}, 200),
        ("::1", {}, 200),
        ("192.0.2.44", {}, 404),
        ("10.0.0.8", {}, 404),
        # A proxy on this machine relaying someone else's request (no trusted proxies set).
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, 404),
        ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, 404),
    ],
)
def test_dev_mailbox_only_for_this_machine(make_app, smtp, remote, headers, status):
    app = make_app(AUTHSERVER_MAIL_URL="console")
    Actions(app.test_client(), smtp).signup()
    with get_database(app).session_scope() as session:
        mail_id = session.scalar(select(func.max(OutboxMail.id)))
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = remote
    assert client.get("/dev/mailbox", headers=headers).status_code == status
    assert client.get(f"/dev/mailbox/{mail_id}", headers=headers).status_code == status


def test_a_database_outage_is_logged_with_its_code_never_its_text():
    """The log line of a 503 names the error's classes and code (a deadlock is not a restart)
    but never the driver's message, which carries the statement's parameters."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import OperationalError

    from authserver.errors import database_error_name

    deadlock = psycopg.errors.DeadlockDetected("deadlock on user martin.dupont@entreprise.fr")
    assert database_error_name(OperationalError("UPDATE", {}, deadlock)) == (
        "OperationalError DeadlockDetected 40P01"
    )
    try:
        sqlite3.connect(":memory:").execute("SELECT secret FROM missing")
    except sqlite3.OperationalError as exc:
        named = database_error_name(OperationalError("SELECT", {}, exc))
    assert named == "OperationalError SQLITE_ERROR"
    assert "martin" not in database_error_name(OperationalError("x", {}, deadlock))
