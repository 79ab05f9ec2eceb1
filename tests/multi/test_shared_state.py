"""What two instances must share: ceremonies, single use, sessions and their revocation, throttling.

Each test drives instances A and B over real HTTP, as a load balancer would send one
browser's requests to either.
"""

from __future__ import annotations

import threading

import pytest

from tests.multi.cluster import Browser, Instance, passkey_login
from tests.multi.conftest import PasskeyUser, Setup

pytestmark = [pytest.mark.pg, pytest.mark.xdist_group("multi")]


def test_passkey_ceremony_begun_on_one_instance_finishes_on_the_other(
    multi: Setup, passkey_user: PasskeyUser
):
    a, b = multi.cluster.a, multi.cluster.b
    browser = Browser()
    done = passkey_login(browser, a, b, passkey_user.authenticator)
    assert done.status == 200, done.text
    assert done.json()["redirect"].startswith("/")
    assert browser.cookies.get("authserver_session")
    # The session opened by B is valid on both.
    for instance in (a, b):
        check = browser.get(instance, "/auth/verify")
        assert check.status == 200
        assert check.header("X-Auth-User") == passkey_user.username

    # Username-first, the other way round.
    other = Browser()
    done = passkey_login(other, b, a, passkey_user.authenticator, username=passkey_user.username)
    assert done.status == 200, done.text
    assert other.get(b, "/auth/verify").status == 200


def test_one_assertion_replayed_on_both_instances_at_once_succeeds_once(
    multi: Setup, passkey_user: PasskeyUser
):
    a, b = multi.cluster.a, multi.cluster.b
    for _round in range(5):
        browser = Browser()
        options = browser.post_json(a, "/webauthn/login/options", {})
        assert options.status == 200
        assertion = passkey_user.authenticator.assert_(options.json())
        barrier = threading.Barrier(2)
        statuses: dict[str, int] = {}
        errors: dict[str, str] = {}

        def verify(instance: Instance, jar: dict[str, str]) -> None:
            copy = Browser(cookies=dict(jar))
            barrier.wait()
            reply = copy.post_json(instance, "/webauthn/login/verify", {"credential": assertion})
            statuses[instance.name] = reply.status
            if reply.status != 200:
                errors[instance.name] = reply.json()["error"]

        threads = [
            threading.Thread(target=verify, args=(instance, browser.cookies)) for instance in (a, b)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses.values()) == [200, 400], (statuses, errors)
        assert list(errors.values()) == ["challenge_invalid"], errors


def test_a_session_revoked_on_one_instance_is_refused_by_the_other_at_once(multi: Setup):
    a, b = multi.cluster.a, multi.cluster.b
    browser = Browser()
    assert browser.password_login(a, "multi.revoke").status == 302
    token = browser.cookies["authserver_session"]
    stolen = Browser(cookies={"authserver_session": token})
    assert stolen.get(b, "/auth/verify").status == 200
    assert stolen.get(b, "/account/passkeys").status == 200

    assert browser.logout(a).status == 302
    # Nothing cached anywhere: B refuses the very next request.
    assert stolen.get(b, "/auth/verify").status == 401
    page = stolen.get(b, "/espace")
    assert page.status == 302
    assert "/login" in (page.header("Location") or "")
    assert stolen.get(a, "/auth/verify").status == 401


def failures_until_throttled(instances: list[Instance], username: str, limit: int = 20) -> int:
    """Wrong passwords on the instances in turn; how many were refused with 401 before a 429."""
    browser = Browser()
    for attempt in range(limit):
        instance = instances[attempt % len(instances)]
        reply = browser.password_login(instance, username, password="wrong password, again 123")
        if reply.status == 429:
            assert reply.header("Retry-After"), "429 without Retry-After"
            return attempt
        assert reply.status == 401, reply.status
    raise AssertionError(f"never throttled after {limit} failures")


def test_throttling_is_counted_across_instances(multi: Setup):
    a, b = multi.cluster.a, multi.cluster.b
    alternating = failures_until_throttled([a, b], "multi.throttle.ab")
    single = failures_until_throttled([a], "multi.throttle.a")
    assert alternating == single == 5  # AUTHSERVER's default: 5 failures per account
    # Throttled on both instances now, whichever is asked.
    for instance in (a, b):
        reply = Browser().password_login(instance, "multi.throttle.ab")
        assert reply.status == 429


def test_client_address_is_the_one_the_load_balancer_forwards(multi: Setup):
    """Behind one trusted proxy (AUTHSERVER_TRUSTED_PROXIES=1): per-IP throttling and login
    events see the client's address, not the load balancer's."""
    from sqlalchemy import create_engine, select

    from authserver.models import LoginEvent, User

    a, b = multi.cluster.a, multi.cluster.b
    for instance, address in ((a, "203.0.113.7"), (b, "198.51.100.23")):
        browser = Browser()
        page = browser.get(instance, "/login")
        reply = browser.request(
            instance,
            "POST",
            "/login",
            form={"csrf_token": page.csrf(), "username": "multi.proxied", "password": "nope"},
            headers={"X-Forwarded-For": address},
        )
        assert reply.status == 401
    engine = create_engine(multi.database_url)
    try:
        with engine.connect() as connection:
            seen = connection.scalars(
                select(LoginEvent.ip)
                .join(User, User.id == LoginEvent.user_id)
                .where(User.username == "multi.proxied")
                .order_by(LoginEvent.id)
            ).all()
    finally:
        engine.dispose()
    assert seen == ["203.0.113.7", "198.51.100.23"]
