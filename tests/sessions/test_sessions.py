"""Server-side sessions: fresh ids, idle and absolute lifetimes, revocation, cookie flags."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from authserver import settings_of
from authserver.db import get_database
from authserver.models import AuthSession, utcnow
from tests.conftest import PASSWORD, Actions, csrf_of, path_of

COOKIE = "authserver_session"


def logout(actions):
    """Se déconnecter from the page the user is on (the espace, or where it leads)."""
    page = actions.client.get("/espace", follow_redirects=True).get_data(as_text=True)
    return actions.client.post("/logout", data={"csrf_token": csrf_of(page)})


def cookie_value(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def row_of(app, token: str) -> AuthSession | None:
    with get_database(app).session_scope() as session:
        return session.get(AuthSession, hashlib.sha256(token.encode()).digest())


def set_row(app, token: str, **values) -> None:
    with get_database(app).session_scope() as session:
        session.execute(
            update(AuthSession)
            .where(AuthSession.id_hash == hashlib.sha256(token.encode()).digest())
            .values(**values)
        )


def logged_in(client) -> bool:
    """Whether this browser has a live session: /espace (or onboarding) rather than /login."""
    response = client.get("/espace")
    if response.status_code == 200:
        return True
    assert response.status_code in (302, 303), response.status_code
    return urlsplit(response.location).path != "/login"


def set_cookie_header(response, name: str) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    return headers[0]


@pytest.fixture
def user(actions) -> Actions:
    actions.create_active_account()
    return actions


# --------------------------------------------------------------------------- fixation


def test_each_login_gets_a_new_random_id(app, user):
    assert user.login().status_code == 302
    first = cookie_value(user.client)
    logout(user)
    assert user.login().status_code == 302
    second = cookie_value(user.client)
    assert first and second and first != second
    assert len(second) >= 43  # 32 random bytes


def test_login_while_logged_in_gives_a_new_cookie_value(app, user):
    """The same user again: the session is re-authenticated under a new cookie value; the
    old value opens nothing any more."""
    assert user.login().status_code == 302
    first = cookie_value(user.client)
    assert user.login().status_code == 302
    second = cookie_value(user.client)
    assert second != first
    assert row_of(app, first).revoked_at is None  # the session (keyed by its first value)
    replay = app.test_client()
    replay.set_cookie(COOKIE, first)
    assert not logged_in(replay)
    assert logged_in(user.client)


def test_a_planted_session_id_is_never_adopted(app, user):
    user.client.set_cookie(COOKIE, "planted-by-an-attacker-0123456789abcdefghijklmn")
    assert not logged_in(user.client)
    assert user.login().status_code == 302
    value = cookie_value(user.client)
    assert value != "planted-by-an-attacker-0123456789abcdefghijklmn"
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, "planted-by-an-attacker-0123456789abcdefghijklmn")
    assert not logged_in(attacker)


def test_anonymous_csrf_secret_is_dropped_at_login(app, user):
    before = user.csrf("/login")
    assert user.login().status_code == 302
    stale = user.client.post("/logout", data={"csrf_token": before})
    assert stale.status_code == 400
    assert logged_in(user.client)


def test_only_the_hash_of_the_id_is_stored(app, user):
    assert user.login().status_code == 302
    token = cookie_value(user.client)
    with get_database(app).session_scope() as session:
        rows = session.scalars(select(AuthSession)).all()
    assert len(rows) == 1
    assert rows[0].id_hash == hashlib.sha256(token.encode()).digest()
    assert token.encode() not in rows[0].id_hash


# --------------------------------------------------------------------------- lifetimes


def test_lifetimes_recorded(app, user):
    assert user.login().status_code == 302
    row = row_of(app, cookie_value(user.client))
    settings = settings_of(app)
    assert settings.session_idle == 30 * 60
    assert settings.session_absolute == 12 * 3600
    assert row.expires_at - row.created_at == timedelta(hours=12)
    assert row.method == "password"
    assert row.revoked_at is None


def test_idle_timeout(app, user):
    assert user.login().status_code == 302
    token = cookie_value(user.client)
    idle = settings_of(app).session_idle

    # Just inside the idle timeout: still valid, and the visit counts as activity.
    set_row(app, token, last_seen_at=utcnow() - timedelta(seconds=idle - 60))
    assert logged_in(user.client)
    assert utcnow() - row_of(app, token).last_seen_at < timedelta(seconds=30)

    # Past it: gone, and the cookie is cleared.
    set_row(app, token, last_seen_at=utcnow() - timedelta(seconds=idle + 1))
    response = user.client.get("/espace")
    assert response.status_code == 302
    assert urlsplit(response.location).path == "/login"
    assert cookie_value(user.client) is None
    replay = app.test_client()
    replay.set_cookie(COOKIE, token)
    assert not logged_in(replay)


def test_absolute_lifetime_even_when_active(app, user):
    assert user.login().status_code == 302
    token = cookie_value(user.client)
    set_row(app, token, expires_at=utcnow() - timedelta(seconds=1), last_seen_at=utcnow())
    assert not logged_in(user.client)


def test_activity_does_not_extend_the_absolute_lifetime(app, user):
    assert user.login().status_code == 302
    token = cookie_value(user.client)
    expires = row_of(app, token).expires_at
    set_row(app, token, last_seen_at=utcnow() - timedelta(minutes=5))
    assert logged_in(user.client)
    assert row_of(app, token).expires_at == expires


def test_lifetimes_are_configurable(make_app, smtp):
    app = make_app(AUTHSERVER_SESSION_IDLE_MINUTES="5", AUTHSERVER_SESSION_MAX_HOURS="1")
    actions = Actions(app.test_client(), smtp)
    actions.create_active_account()
    assert actions.login().status_code == 302
    token = cookie_value(actions.client)
    row = row_of(app, token)
    assert row.expires_at - row.created_at == timedelta(hours=1)
    set_row(app, token, last_seen_at=utcnow() - timedelta(minutes=4))
    assert logged_in(actions.client)
    set_row(app, token, last_seen_at=utcnow() - timedelta(minutes=6))
    assert not logged_in(actions.client)


# --------------------------------------------------------------------------- logout


def test_logout_revokes_server_side(app, user):
    assert user.login().status_code == 302
    token = cookie_value(user.client)
    response = logout(user)
    assert response.status_code == 302
    assert cookie_value(user.client) is None
    row = row_of(app, token)
    assert row.revoked_at is not None
    assert row.revoked_reason == "logout"

    # Replaying the old cookie from anywhere fails.
    replay = app.test_client()
    replay.set_cookie(COOKIE, token)
    assert not logged_in(replay)


def test_logout_ends_only_this_browser(app, user, smtp):
    other = Actions(app.test_client(), smtp)
    assert other.login().status_code == 302
    assert user.login().status_code == 302
    logout(user)
    assert not logged_in(user.client)
    assert logged_in(other.client)


# --------------------------------------------------------------------------- cookie flags


def test_cookie_flags_on_http(app, user):
    response = user.login()
    header = set_cookie_header(response, COOKIE)
    attributes = [a.strip().lower() for a in header.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes
    assert "path=/" in attributes
    # A session cookie: no Expires / Max-Age, the server decides the lifetime.
    assert not any(a.startswith(("expires=", "max-age=")) for a in attributes)
    for name in ("authserver_device",):
        device = [a.strip().lower() for a in set_cookie_header(response, name).split(";")]
        assert "httponly" in device and "samesite=lax" in device


def test_cookies_are_secure_when_the_base_url_is_https(make_app, smtp):
    app = make_app(AUTHSERVER_BASE_URL="https://entreprise.example.fr")
    client = app.test_client()
    actions = Actions(client, smtp)
    signup = actions.signup()
    assert signup.status_code == 302
    assert client.get(path_of(actions.activation_link())).status_code == 200

    page = client.get("/login", base_url="https://entreprise.example.fr")
    csrf = csrf_of(page.get_data(as_text=True))
    response = client.post(
        "/login",
        base_url="https://entreprise.example.fr",
        data={"csrf_token": csrf, "username": "martin.dupont", "password": PASSWORD},
    )
    assert response.status_code == 302
    for name in (COOKIE, "authserver_device"):
        attributes = [a.strip().lower() for a in set_cookie_header(response, name).split(";")]
        assert "secure" in attributes
        assert "httponly" in attributes
        assert "samesite=lax" in attributes
    flask_cookie = [h for h in page.headers.getlist("Set-Cookie") if "authserver_flask=" in h]
    assert flask_cookie and "secure" in flask_cookie[0].lower()


# --------------------------------------------------------------------------- cookie bytes


@pytest.mark.parametrize("bad", ["junk=\xff", "junk=\xe9", 'junk="\xff\xfe"', "\xff=\xe9"])
def test_a_cookie_that_is_not_utf8_beside_ours_is_ignored_by_the_pages(app, user, caplog, bad):
    """Raw bytes in another cookie (WSGI gives each as one latin-1 character): the pages read
    our cookies as without it, and log nothing."""
    assert user.login().status_code == 302
    ours = f"{COOKIE}={cookie_value(user.client)}"
    browser = app.test_client(use_cookies=False)  # sends the header as given, byte for byte

    def get(path: str, header: str):
        return browser.get(path, environ_overrides={"HTTP_COOKIE": header})

    with caplog.at_level(logging.INFO):
        assert get("/account/passkeys", f"{bad}; {ours}").status_code == 200
        assert get("/account/passkeys", f"{ours}; {bad}").status_code == 200
        refused = get("/account/passkeys", bad)
        assert refused.status_code == 302 and urlsplit(refused.location).path == "/login"
        page = get("/login", bad)
        assert page.status_code == 200
        (flask,) = [
            h.split(";")[0]
            for h in page.headers.getlist("Set-Cookie")
            if h.startswith("authserver_flask=")
        ]
        login = browser.post(
            "/login",
            data={
                "csrf_token": csrf_of(page.get_data(as_text=True)),
                "username": "martin.dupont",
                "password": PASSWORD,
            },
            environ_overrides={"HTTP_COOKIE": f"{bad}; {flask}"},
        )
        assert login.status_code == 302
        assert set_cookie_header(login, COOKIE)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
