"""The pending-ceremony stores' check-and-spend (``spend_pending``), on each store.

The login fast path no longer reads a ceremony before spending it: one call both checks it
(purpose, user, browser, still live) and spends it, so that a login costs one statement on
the store instead of two. It must spend only the ceremony it names, exactly once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from authserver.db import get_database
from authserver.ops import redis_client
from authserver.webauthn.challenges import DatabaseChallengeStore, Pending, RedisChallengeStore
from authserver.webauthn.sidecar import SidecarChallengeStore
from tests.alerts.console_helpers import add_user

BINDING = b"\x01" * 32
LOGIN = Pending("login", None, BINDING)


class InApp:
    """The database store, each call in its own app context and transaction (as a request)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.inner = DatabaseChallengeStore(get_database(app).scoped)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            with self.app.app_context():
                result = getattr(self.inner, name)(*args)
                get_database(self.app).scoped().commit()
                get_database(self.app).scoped.remove()
                return result

        return call


@pytest.fixture(params=["sidecar", "database", pytest.param("redis", marks=pytest.mark.pg)])
def store(request: pytest.FixtureRequest, tmp_path: Any, make_app: Any) -> Iterator[Any]:
    if request.param == "sidecar":
        sidecar = SidecarChallengeStore(tmp_path / "ceremonies.db")
        yield sidecar
        sidecar.dispose()
    elif request.param == "database":
        app = make_app()
        # Its ceremonies name real users (a foreign key).
        assert add_user(app, "compte.sept") == 1 and add_user(app, "compte.huit") == 2
        yield InApp(app)
    else:
        client = redis_client(request.getfixturevalue("redis_server").url)
        yield RedisChallengeStore(client)
        client.close()


def challenge() -> bytes:
    return secrets.token_bytes(32)


def test_the_ceremony_named_is_spent_once(store):
    mine = challenge()
    store.save(mine, LOGIN, 60)
    assert store.spend_pending(mine, LOGIN) is True
    assert store.spend_pending(mine, LOGIN) is False
    assert store.peek(mine) is None


@pytest.mark.parametrize(
    "other",
    [
        Pending("register", None, BINDING),  # another ceremony's purpose
        Pending("login", 1, BINDING),  # a username-first ceremony of user 1
        Pending("login", None, b"\x02" * 32),  # begun in another browser
    ],
)
def test_a_ceremony_that_is_not_the_one_named_is_left_alone(store, other):
    mine = challenge()
    store.save(mine, other, 60)
    assert store.spend_pending(mine, LOGIN) is False
    assert store.peek(mine) == other  # still there, for the view that will judge it
    assert store.spend_pending(mine, other) is True


def test_a_username_first_ceremony_is_spent_by_its_own_user(store):
    mine = challenge()
    store.save(mine, Pending("login", 1, BINDING), 60)
    assert store.spend_pending(mine, Pending("login", 2, BINDING)) is False
    assert store.spend_pending(mine, Pending("login", 1, BINDING)) is True


def test_an_unknown_or_expired_ceremony_is_not_spent(store):
    assert store.spend_pending(challenge(), LOGIN) is False
    old = challenge()
    store.save(old, LOGIN, 1)
    if isinstance(store, RedisChallengeStore):
        time.sleep(1.2)  # Redis expires the key itself
    else:
        store.expire_all()
    assert store.spend_pending(old, LOGIN) is False


def test_of_concurrent_spends_exactly_one_wins(store):
    mine = challenge()
    store.save(mine, LOGIN, 60)
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda _: store.spend_pending(mine, LOGIN), range(8)))
    assert won.count(True) == 1


def test_a_ceremony_taken_tells_its_time_left_and_is_spent(store):
    mine = challenge()
    store.save(mine, LOGIN, 60)
    left = store.take_pending(mine, LOGIN)
    assert left is not None and 55 < left <= 60
    assert store.take_pending(mine, LOGIN) is None
    assert store.spend_pending(mine, LOGIN) is False


@pytest.mark.parametrize(
    "other", [Pending("register", None, BINDING), Pending("login", None, b"\x02" * 32)]
)
def test_a_ceremony_that_is_not_the_one_named_is_not_taken(store, other):
    mine = challenge()
    store.save(mine, other, 60)
    assert store.take_pending(mine, LOGIN) is None
    assert store.peek(mine) == other
    assert store.take_pending(challenge(), LOGIN) is None  # unknown


def test_a_ceremony_put_back_is_live_again_for_the_time_it_had_left(store):
    """A login that took the ceremony and then wrote nothing gives it back: the view that
    judges the login next finds it; and it still ends when it would have."""
    mine = challenge()
    store.save(mine, LOGIN, 60)
    left = store.take_pending(mine, LOGIN)
    assert left is not None
    store.put_back(mine, LOGIN, left)
    assert store.peek(mine) == LOGIN
    assert store.spend_pending(mine, LOGIN) is True
    short = challenge()
    store.save(short, LOGIN, 60)
    assert store.take_pending(short, LOGIN) is not None
    store.put_back(short, LOGIN, 0.05)
    time.sleep(0.1)  # Redis and the sidecar expire by the clock, the database store too
    assert store.take_pending(short, LOGIN) is None
    spent = challenge()
    store.put_back(spent, LOGIN, 0.0)  # nothing left: nothing to give back
    assert store.peek(spent) is None


def test_of_concurrent_takes_exactly_one_wins(store):
    mine = challenge()
    store.save(mine, LOGIN, 60)
    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda _: store.take_pending(mine, LOGIN), range(8)))
    assert sum(left is not None for left in taken) == 1
