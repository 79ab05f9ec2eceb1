"""Throttling of password logins: per account, per IP, and the owner's known browser."""

from __future__ import annotations

import html
import threading
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, text

from authserver import settings_of
from authserver.db import get_database
from authserver.models import LoginEvent, OutboxMail
from tests.conftest import PASSWORD, Actions, csrf_of
from tests.sqlite_commits import count_commits

WRONG = "ce n'est pas le bon mot de passe"


def logout(actions):
    """Se déconnecter from the page the user is on (the espace, or where it leads)."""
    page = actions.client.get("/espace", follow_redirects=True).get_data(as_text=True)
    return actions.client.post("/logout", data={"csrf_token": csrf_of(page)})


def logged_in(client) -> bool:
    """Whether this browser has a live session: /espace (or onboarding) rather than /login."""
    response = client.get("/espace")
    if response.status_code == 200:
        return True
    assert response.status_code in (302, 303), response.status_code
    return urlsplit(response.location).path != "/login"


def browser(app, smtp, ip: str) -> Actions:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return Actions(client, smtp)


def assert_throttled(response, app) -> None:
    assert response.status_code == 429
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit()
    assert 0 < int(retry_after) <= settings_of(app).throttle_window
    page = html.unescape(response.get_data(as_text=True))
    assert "Trop de tentatives" in page
    assert "réessayez dans" in page
    assert "authserver_session=" not in " ".join(response.headers.getlist("Set-Cookie"))


@pytest.fixture
def owner(app, smtp) -> Actions:
    """The real user: an active account, and the browser it was activated from."""
    actions = browser(app, smtp, "192.0.2.10")
    actions.create_active_account()
    return actions


def test_account_limit_then_429_even_with_the_right_password(app, smtp, owner):
    limit = settings_of(app).throttle_account_failures
    assert limit == 5  # the documented default
    attacker = browser(app, smtp, "203.0.113.66")
    for _ in range(limit):
        assert attacker.login(password=WRONG).status_code == 401
    assert_throttled(attacker.login(password=WRONG), app)
    assert_throttled(attacker.login(), app)  # the right password does not help
    assert not logged_in(attacker.client)

    with get_database(app).session_scope() as session:
        outcomes = session.scalars(select(LoginEvent.outcome).order_by(LoginEvent.id)).all()
    assert outcomes == ["failure"] * limit + ["throttled", "throttled"]


def test_the_throttled_page_says_what_still_works(app, smtp, owner):
    """Issue 12: the page names the usual browser and the passkeys, and counts in French."""
    attacker = browser(app, smtp, "203.0.113.67")
    for _ in range(settings_of(app).throttle_account_failures):
        attacker.login(password=WRONG)
    response = attacker.login(password=WRONG)
    assert_throttled(response, app)
    page = html.unescape(response.get_data(as_text=True))
    assert "réessayez dans 15 minutes" in page
    assert "minute(s)" not in page
    assert "votre navigateur habituel" in page and "n'est pas bloqué" in page
    assert "vos clés d'accès fonctionnent toujours" in page
    assert "« Mot de passe oublié ? »" in page


def test_account_limit_counts_across_addresses(app, smtp, owner):
    limit = settings_of(app).throttle_account_failures
    for i in range(limit):
        assert browser(app, smtp, f"198.51.100.{i + 1}").login(password=WRONG).status_code == 401
    assert_throttled(browser(app, smtp, "198.51.100.200").login(), app)


def test_unknown_identifiant_is_throttled_the_same_way(app, smtp):
    limit = settings_of(app).throttle_account_failures
    attacker = browser(app, smtp, "203.0.113.66")
    for _ in range(limit):
        assert attacker.login("personne.inconnue", WRONG).status_code == 401
    assert_throttled(attacker.login("personne.inconnue", WRONG), app)


def test_known_browser_still_logs_in_while_an_attacker_is_throttled(app, smtp, owner):
    # The owner logged in from this browser before: it holds a device cookie of the account.
    assert owner.login().status_code == 302
    assert owner.client.get_cookie("authserver_device") is not None
    logout(owner)

    limit = settings_of(app).throttle_account_failures
    attacker = browser(app, smtp, "203.0.113.66")
    for _ in range(limit + 3):
        attacker.login(password=WRONG)
    assert_throttled(attacker.login(), app)

    response = owner.login()
    assert response.status_code == 302
    assert logged_in(owner.client)


def test_known_browser_has_its_own_limit(app, smtp, owner):
    assert owner.login().status_code == 302
    logout(owner)
    limit = settings_of(app).throttle_account_failures
    for _ in range(limit):
        assert owner.login(password=WRONG).status_code == 401
    assert_throttled(owner.login(), app)


@pytest.mark.parametrize("cookie", ["forged", "other-account"])
def test_a_device_cookie_of_something_else_does_not_help(app, smtp, owner, cookie):
    attacker = browser(app, smtp, "203.0.113.66")
    if cookie == "forged":
        attacker.client.set_cookie("authserver_device", "eyJ0b2tlbiI6IDF9.bidon")
    else:
        # The attacker's own account gives its browser a genuine device cookie.
        attacker.create_active_account("pirate.attaquant")
        assert attacker.login("pirate.attaquant").status_code == 302
        logout(attacker)
        assert attacker.client.get_cookie("authserver_device") is not None
    limit = settings_of(app).throttle_account_failures
    for _ in range(limit):
        assert attacker.login(password=WRONG).status_code == 401
    assert_throttled(attacker.login(), app)


def test_per_ip_limit(app, smtp, owner):
    limit = settings_of(app).throttle_ip_failures
    attacker = browser(app, smtp, "203.0.113.99")
    # One failure per identifiant: no account limit is reached, only the address's.
    csrf = attacker.csrf()
    for i in range(limit):
        response = attacker.client.post(
            "/login", data={"csrf_token": csrf, "username": f"cible{i}", "password": WRONG}
        )
        assert response.status_code == 401, i
    assert_throttled(attacker.login("martin.dupont", PASSWORD), app)
    assert_throttled(attacker.login("une.autre.cible", WRONG), app)
    # Other addresses are not affected, nor is the account.
    assert browser(app, smtp, "203.0.113.100").login().status_code == 302


def test_per_ip_limit_counts_an_ipv6_slash_64_as_one_address(app, smtp, owner):
    """Issue 11: an IPv6 client changes addresses inside its /64 at will."""
    limit = settings_of(app).throttle_ip_failures
    attacker = browser(app, smtp, "2001:db8:1:2::1")
    csrf = attacker.csrf()
    for i in range(limit):
        attacker.client.environ_base["REMOTE_ADDR"] = f"2001:db8:1:2:{i:x}::{i + 1:x}"
        response = attacker.client.post(
            "/login", data={"csrf_token": csrf, "username": f"cible{i}", "password": WRONG}
        )
        assert response.status_code == 401, i
    attacker.client.environ_base["REMOTE_ADDR"] = "2001:db8:1:2:ffff:ffff:ffff:fffe"
    assert_throttled(attacker.login("une.autre.cible", WRONG), app)
    # The next /64 is another subscriber.
    assert browser(app, smtp, "2001:db8:1:3::1").login().status_code == 302


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:0DB8:0:0:ffff::9", "2001:db8::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("", ""),
        ("unix-socket", "unix-socket"),
    ],
)
def test_ip_keys(ip, key):
    from authserver.throttle import ip_key

    assert ip_key(ip) == key


def test_success_does_not_reset_the_untrusted_counter(app, smtp, owner):
    """A correct login from some browser does not give an attacker a fresh budget."""
    limit = settings_of(app).throttle_account_failures
    attacker = browser(app, smtp, "203.0.113.66")
    for _ in range(limit - 1):
        assert attacker.login(password=WRONG).status_code == 401
    assert owner.login().status_code == 302
    assert attacker.login(password=WRONG).status_code == 401
    assert_throttled(attacker.login(password=WRONG), app)


# --------------------------------------------------------------------------- shared, atomic


def parallel_logins(app, smtp, count: int, password: str = WRONG) -> list[int]:
    """``count`` browsers (one IP each) send a password at the same moment; their statuses."""
    browsers = [browser(app, smtp, f"198.51.100.{i + 1}") for i in range(count)]
    forms = [b.csrf() for b in browsers]
    start = threading.Barrier(count)
    statuses: list[int] = [0] * count

    def attempt(i: int) -> None:
        start.wait()
        data = {"csrf_token": forms[i], "username": "martin.dupont", "password": password}
        statuses[i] = browsers[i].client.post("/login", data=data).status_code

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


@pytest.fixture
def backend_owner(backend_app, smtp) -> Actions:
    actions = browser(backend_app, smtp, "192.0.2.10")
    actions.create_active_account()
    return actions


def test_parallel_wrong_passwords_never_exceed_the_limit(backend_app, smtp, backend_owner):
    """Counted before Argon2 runs: guesses sent together cannot all be checked."""
    limit = settings_of(backend_app).throttle_account_failures
    statuses = parallel_logins(backend_app, smtp, 12)
    assert sorted(set(statuses)) == [401, 429], statuses
    assert statuses.count(401) == limit
    assert_throttled(backend_owner.login(), backend_app)
    # The owner was told once, when the limit was reached.
    with get_database(backend_app).session_scope() as session:
        kinds = session.scalars(select(OutboxMail.kind)).all()
    assert kinds.count("throttled") == 1


def test_parallel_right_passwords_are_refunded(backend_app, smtp, backend_owner):
    """A right password does not use up the budget: the attacker's is still the limit."""
    statuses = parallel_logins(backend_app, smtp, 4, password=PASSWORD)
    assert statuses == [302] * 4
    limit = settings_of(backend_app).throttle_account_failures
    attacker = browser(backend_app, smtp, "203.0.113.66")
    for _ in range(limit):
        assert attacker.login(password=WRONG).status_code == 401
    assert_throttled(attacker.login(password=WRONG), backend_app)


def test_instances_on_one_database_share_the_counters(make_app, smtp, tmp_path):
    """Without Redis, every worker and instance counts in the main database (`make run`)."""
    first = make_app()
    second = make_app(get_database(first).url)
    browser(first, smtp, "192.0.2.10").create_active_account()
    limit = settings_of(first).throttle_account_failures
    on_first, on_second = (
        browser(first, smtp, "203.0.113.66"),
        browser(second, smtp, "203.0.113.66"),
    )
    for i in range(limit):
        assert (on_first if i % 2 else on_second).login(password=WRONG).status_code == 401
    assert_throttled(on_first.login(), first)
    assert_throttled(on_second.login(), second)
    # Plain limits too: password-reset requests per address count on both instances.
    for i in range(10):
        requester = browser(first if i % 2 else second, smtp, "203.0.113.77")
        data = {"csrf_token": requester.csrf("/password/forgot"), "username": "x.y"}
        assert requester.client.post("/password/forgot", data=data).status_code == 200
    requester = browser(first, smtp, "203.0.113.77")
    data = {"csrf_token": requester.csrf("/password/forgot"), "username": "x.y"}
    assert requester.client.post("/password/forgot", data=data).status_code == 429


def test_counters_live_in_the_database_when_redis_is_not_configured(app):
    from authserver.throttle import DatabaseStorage, throttle

    with app.app_context():
        storage = throttle().storage
        assert isinstance(storage, DatabaseStorage)
        assert storage.incr("essai", 60) == 1
        assert storage.incr("essai", 60, 2) == 3
        assert storage.get("essai") == 3
        assert storage.decr("essai") == 2
        assert 0 < storage.get_expiry("essai") - time.time() <= 60
        assert storage.acquire("essai", 3, 60) == (True, 3)
        counted, window_end = storage.acquire("essai", 3, 60)
        assert not counted and window_end > time.time()
        storage.clear("essai")
        assert storage.get("essai") == 0
        assert storage.check()
        storage.incr("essai", 60)
        assert storage.reset() == 1  # the row of « essai », the only key
        assert storage.get("essai") == 0


def test_a_right_password_costs_one_short_transaction_besides_the_login(app, smtp, owner):
    """Issue 16: on the embedded database each throttle step was its own write transaction
    queued on SQLite's one lock (two reservations, two refunds, the known browser's reset:
    five beside the login). The reservation is one (it must be committed before Argon2
    runs); the refund and the reset are written in the login's own transaction."""
    logout(owner)
    commits = count_commits(app)
    assert owner.login().status_code == 302
    assert commits[0] == 2  # reservation; login + refund + reset

    with get_database(app).engine.connect() as connection:
        counts = connection.execute(text("SELECT key, count FROM throttle_counters")).all()
    # Refunded: the right password counted as no failure, the known browser's counter gone.
    assert [count for key, count in counts if key.startswith("login-ip/")] == [0], counts
    assert not [key for key, _ in counts if key.startswith("login-dev/")], counts


def test_a_refused_reservation_takes_nothing(app):
    """Both counters in one transaction: when the second is full, the first is not taken
    (before, it was taken and given back in two more transactions)."""
    from authserver.throttle import throttle

    with app.app_context():
        limiter = throttle()
        storage = limiter.storage
        for _ in range(limiter.account_failures):
            assert limiter.reserve_login("x.y", "198.51.100.1", None).allowed
        refused = limiter.reserve_login("x.y", "198.51.100.2", None)
        assert not refused.allowed and refused.retry_after > 0
        assert storage.get("login-ip/198.51.100.2") == 0
        assert storage.get("login-ip/198.51.100.1") == limiter.account_failures


@pytest.mark.pg
def test_a_redis_reached_through_its_unix_socket_holds_the_counters(make_app, smtp, redis_server):
    """``AUTHSERVER_REDIS_URL=unix://…`` (accepted by the settings) made the server fail at
    start: ``limits`` names that scheme ``redis+unix``. The counters now live in that Redis."""
    from limits.storage import RedisStorage

    from authserver.throttle import throttle

    redis_server.flush()
    try:
        app = make_app(AUTHSERVER_REDIS_URL=redis_server.unix_url)  # failed before
        with app.app_context():
            assert isinstance(throttle().storage, RedisStorage)
        browser(app, smtp, "192.0.2.10").create_active_account()
        attacker = browser(app, smtp, "203.0.113.66")
        for _ in range(settings_of(app).throttle_account_failures):
            assert attacker.login(password=WRONG).status_code == 401
        assert_throttled(attacker.login(password=WRONG), app)
        client = redis_server.client()  # over TCP: the same Redis
        assert any(b"login-acct/" in key for key in client.keys("*"))
        client.close()
    finally:
        # The Redis serves the test worker's later tests: the throttled account must not
        # be throttled there (test_conditional_create logs the same identifiant in).
        redis_server.flush()
