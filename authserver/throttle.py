"""Throttling of failed logins and of e-mail-sending forms.

Counters are shared by every worker process and every instance: in Redis when
``AUTHSERVER_REDIS_URL`` is set, else in the main database (``DatabaseStorage``, a
``limits`` storage over the ``throttle_counters`` table). ``authserver serve`` runs
several workers, so a per-process (``memory://``) counter would multiply every limit by
their number: memory is only for a single process (tests, tools).

Each limit is a fixed window opened by the first counted attempt: at most N attempts
until it closes. A password attempt is counted *before* the password is verified (a
reservation: one atomic increment that refuses past the limit) and refunded when the
password was right, so N guesses sent at the same moment cannot all pass while Argon2
runs.

Lock-out resistance follows OWASP's "device cookies" idea: failures from
browsers that are not a known device of the account count against the account
for *untrusted* clients only; a browser that already logged in to the account
has its own counter. An attacker hammering an identifiant from elsewhere slows
down other unknown browsers, never the owner's usual one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from limits.storage import RedisStorage, Storage, storage_from_string
from sqlalchemy import Engine, delete, text

from authserver.models import ThrottleCounter
from authserver.rawsql import RawConnections

EXTENSION_KEY = "authserver.throttle"
# Driver connections the database counters keep aside (ops.pool_capacity counts them).
KEPT_CONNECTIONS = 2
PURGE_PROBABILITY = 0.01  # of an acquisition also deleting the windows that closed


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0


@dataclass(frozen=True)
class Refund:
    """What a right password gives back: one attempt on ``keys``; ``clear``, forgotten."""

    keys: tuple[str, ...]
    clear: tuple[str, ...]


@dataclass(frozen=True)
class Reservation:
    """A password attempt counted in advance; ``refund`` it when the password was right."""

    allowed: bool
    retry_after: int = 0
    keys: tuple[str, ...] = ()
    # This attempt took the account's last one: if it fails, the account is now throttled.
    reached: bool = False


# One statement opens, counts or reopens a key's window and says the count (no row: the limit
# was reached). Same text on SQLite and PostgreSQL; ``LIMITED`` adds the refusal.
_UPSERT = """
INSERT INTO throttle_counters (key, count, expires_at) VALUES (:key, :amount, :fresh)
ON CONFLICT (key) DO UPDATE SET
  count = CASE WHEN throttle_counters.expires_at <= :now THEN :amount
               ELSE throttle_counters.count + :amount END,
  expires_at = CASE WHEN throttle_counters.expires_at <= :now THEN :fresh
                    ELSE throttle_counters.expires_at END
{where}
RETURNING count, expires_at
"""
_LIMITED = (
    "WHERE throttle_counters.expires_at <= :now OR throttle_counters.count + :amount <= :limit"
)
# A refund: one attempt given back, never below zero nor on a window that closed.
_REFUND = """
UPDATE throttle_counters
SET count = CASE WHEN count > :amount THEN count - :amount ELSE 0 END
WHERE key = :key AND expires_at > :now AND count > 0
"""
_CLEAR = "DELETE FROM throttle_counters WHERE key = :key"
_PURGE = "DELETE FROM throttle_counters WHERE expires_at < :before"
_COUNT = "SELECT count FROM throttle_counters WHERE key = :key AND expires_at > :now"
_EXPIRY = "SELECT expires_at FROM throttle_counters WHERE key = :key"


class DatabaseStorage(Storage):
    """``limits`` storage in the main database (SQLite or PostgreSQL), for fixed windows.

    Every change is one statement in its own short transaction, committed at once: an
    ``INSERT … ON CONFLICT DO UPDATE`` that opens, counts or reopens the window, atomic on
    both databases (SQLite's write lock, PostgreSQL's row lock), so concurrent workers
    never both take the last attempt.

    A password login runs these twice (issue 16): the statements are compiled once and run
    on driver connections (``rawsql``), where building them through SQLAlchemy at each call
    cost more CPU than SQLite spent running them.
    """

    STORAGE_SCHEME = None  # built from the app's engine, not from a URI

    def __init__(self, engine: Engine) -> None:
        super().__init__(None)
        self.engine = engine
        # Two kept aside at most: each stays checked out of the worker's pool (ops.py budget).
        self.raw = RawConnections(engine, keep=KEPT_CONNECTIONS, short_waits=True)
        prepare = self.raw.prepare
        self._upsert_any = prepare(text(_UPSERT.format(where="")))
        self._upsert_limited = prepare(text(_UPSERT.format(where=_LIMITED)))
        self._refund = prepare(text(_REFUND))
        self._clear = prepare(text(_CLEAR))
        self._purge = prepare(text(_PURGE))
        self._count = prepare(text(_COUNT))
        self._expiry = prepare(text(_EXPIRY))

    @property
    def base_exceptions(self) -> type[Exception]:
        return self.raw.errors  # type: ignore[return-value]

    def _count_one(
        self, cursor: Any, key: str, expiry: float, amount: int, limit: int | None, now: float
    ) -> tuple[Any, ...] | None:
        values: dict[str, Any] = {"key": key, "amount": amount, "fresh": now + expiry, "now": now}
        if limit is None:
            return self._upsert_any.first(cursor, values)
        return self._upsert_limited.first(cursor, {**values, "limit": limit})

    def _maybe_purge(self, cursor: Any, now: float) -> None:
        if random.random() < PURGE_PROBABILITY:
            self._purge.execute(cursor, {"before": now - 60})

    def _upsert(
        self, key: str, expiry: float, amount: int, limit: int | None
    ) -> tuple[Any, ...] | None:
        return self._count_all([(key, limit)], expiry, amount)[0]

    def _count_all(
        self, limits: list[tuple[str, int | None]], expiry: float, amount: int = 1
    ) -> tuple[tuple[Any, ...] | None, str]:
        """Count on every key in one write transaction, or on none: (the last key's row, its
        key), or (None, the full key) — rolled back — when one of them was full."""
        now = time.time()
        row: tuple[Any, ...] | None = None
        key = ""
        with self.raw.transaction() as cursor:
            self.raw.begin_write(cursor)
            for key, limit in limits:
                row = self._count_one(cursor, key, expiry, amount, limit, now)
                if row is None:
                    cursor.connection.rollback()
                    return None, key
            self._maybe_purge(cursor, now)
        return row, key

    def acquire_all(self, limits: list[tuple[str, int]], expiry: float) -> tuple[bool, float]:
        """Count one attempt on every key, in one transaction, or on none when one of them
        is full: (True, the last key's count) or (False, the full key's window end). One
        write transaction where a key at a time took one each (and gave back the earlier
        ones in more when refused) — each queued on SQLite's single write lock."""
        row, key = self._count_all(list(limits), expiry)
        if row is None:
            return False, self.get_expiry(key)
        return True, row[0]

    def release_all(self, keys: tuple[str, ...], clear: tuple[str, ...] = ()) -> None:
        """Give back one attempt on each of ``keys`` and forget ``clear``: one transaction."""
        with self.raw.transaction() as cursor:
            self.raw.begin_write(cursor)
            self.release_on(cursor, keys, clear)

    def release_on(self, cursor: Any, keys: tuple[str, ...], clear: tuple[str, ...]) -> None:
        """``release_all``'s statements in the caller's write transaction, on a driver cursor
        of this database (the password login fast path's: the refund goes with the login)."""
        now = time.time()
        for key in keys:
            self._refund.execute(cursor, {"key": key, "amount": 1, "now": now})
        for key in clear:
            self._clear.execute(cursor, {"key": key})

    def acquire(self, key: str, limit: int, expiry: float) -> tuple[bool, float]:
        """Count one attempt unless the limit is reached: (counted, count or window end)."""
        row = self._upsert(key, expiry, 1, limit)
        if row is None:
            return False, self.get_expiry(key)
        return True, row[0]

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        row = self._upsert(key, expiry, amount, None)
        assert row is not None
        return int(row[0])

    def decr(self, key: str, amount: int = 1) -> int:
        with self.raw.transaction() as cursor:
            self.raw.begin_write(cursor)
            self._refund.execute(cursor, {"key": key, "amount": amount, "now": time.time()})
        return self.get(key)

    def _read(self, statement: Any, values: dict[str, Any]) -> Any:
        with self.raw.transaction() as cursor:
            row = statement.first(cursor, values)
        return None if row is None else row[0]

    def get(self, key: str) -> int:
        return int(self._read(self._count, {"key": key, "now": time.time()}) or 0)

    def get_expiry(self, key: str) -> float:
        expiry = self._read(self._expiry, {"key": key})
        return max(float(expiry or 0), time.time())

    def check(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return connection.execute(delete(ThrottleCounter)).rowcount

    def clear(self, key: str) -> None:
        with self.raw.transaction() as cursor:
            self.raw.begin_write(cursor)
            self._clear.execute(cursor, {"key": key})


# DECR that never goes below zero nor recreates a key whose window closed.
_REDIS_REFUND = """
local count = tonumber(redis.call('get', KEYS[1]) or '0')
if count > 0 then return redis.call('decr', KEYS[1]) end
return 0
"""


def ip_key(ip: str) -> str:
    """The part of a client address a per-IP counter counts: IPv6 by /64 (issue 11).

    One IPv6 subscriber or server gets a whole /64 and can change addresses at will inside
    it: per address, a limit would count each guess afresh. IPv4 (and IPv4-mapped IPv6)
    addresses count one by one; a value that is not an address is counted as given.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _subject(*parts: str) -> str:
    """A fixed-length, printable key part for values typed by clients (identifiants)."""
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()


def _device_counter(username_key: str, device_key: str) -> str:
    """The counter of one account's failures from one of its known browsers."""
    return f"login-dev/{_subject(username_key, device_key)}"


def refund_of(
    reservation: Reservation, username_key: str, device_key: str | None, *, logged_in: bool
) -> Refund:
    """A right password's refund: the attempt was no failure and, when a known browser
    logged in, its own counter starts again from zero (forgotten, so not refunded too)."""
    clear: tuple[str, ...] = ()
    if logged_in and device_key:
        clear = (_device_counter(username_key, device_key),)
    return Refund(tuple(key for key in reservation.keys if key not in clear), clear)


class Throttle:
    def __init__(
        self,
        storage: Storage,
        *,
        window: int,
        account_failures: int,
        ip_failures: int,
    ) -> None:
        self.storage = storage
        self.window = window
        self.account_failures = account_failures
        self.ip_failures = ip_failures

    # -- counters over any storage -------------------------------------------------------

    def _acquire(self, key: str, limit: int, window: int) -> tuple[bool, float]:
        """(True, count) when counted, (False, end of the window) when the limit is reached."""
        if isinstance(self.storage, DatabaseStorage):
            return self.storage.acquire(key, limit, window)
        count = self.storage.incr(key, window)  # atomic in Redis and in memory
        if count > limit:
            self._release(key)
            return False, self.storage.get_expiry(key)
        return True, count

    def _release(self, key: str) -> None:
        if isinstance(self.storage, RedisStorage):
            client: Any = self.storage.get_connection()
            client.eval(_REDIS_REFUND, 1, self.storage.prefixed_key(key))
        else:
            self.storage.decr(key)  # type: ignore[attr-defined]

    @staticmethod
    def _retry_after(window_end: float) -> int:
        return max(1, math.ceil(window_end - time.time()))

    # -- password logins -----------------------------------------------------------------

    def _login_keys(
        self, username_key: str, ip: str, device_key: str | None
    ) -> list[tuple[str, int]]:
        if device_key:
            account = (_device_counter(username_key, device_key), self.account_failures)
        else:
            account = (f"login-acct/{_subject(username_key)}", self.account_failures)
        return [(f"login-ip/{ip_key(ip)}", self.ip_failures), account]

    def reserve_login(self, username_key: str, ip: str, device_key: str | None) -> Reservation:
        """Count this password attempt now, or refuse it (with Retry-After) when over a limit."""
        limits = self._login_keys(username_key, ip, device_key)
        if isinstance(self.storage, DatabaseStorage):
            counted, value = self.storage.acquire_all(limits, self.window)
            if not counted:
                return Reservation(False, self._retry_after(value))
            taken = [key for key, _ in limits]
            count = int(value)
        else:
            taken = []
            count = 0
            for key, limit in limits:
                counted, value = self._acquire(key, limit, self.window)
                if not counted:
                    for earlier in taken:
                        self._release(earlier)
                    return Reservation(False, self._retry_after(value))
                taken.append(key)
                count = int(value)
        return Reservation(True, keys=tuple(taken), reached=count >= self.account_failures)

    def password_right(
        self,
        reservation: Reservation,
        username_key: str,
        device_key: str | None,
        *,
        logged_in: bool,
    ) -> None:
        """The password was right: the attempt was no failure (refunded) and, when a known
        browser logged in, its own counter starts again from zero — one round trip."""
        self.give_back(refund_of(reservation, username_key, device_key, logged_in=logged_in))

    def give_back(self, refund: Refund) -> None:
        if isinstance(self.storage, DatabaseStorage):
            self.storage.release_all(refund.keys, refund.clear)
            return
        for key in refund.keys:
            self._release(key)
        for key in refund.clear:
            self.storage.clear(key)

    def refund_job(self, refund: Refund, engine: Engine) -> Callable[[Any], None] | None:
        """``refund`` as statements for a write transaction on ``engine``'s driver cursors,
        when the counters live in that database; None when they do not (Redis, memory):
        then ``give_back`` after the commit."""
        storage = self.storage
        if not isinstance(storage, DatabaseStorage) or storage.engine.url != engine.url:
            return None
        return lambda cursor: storage.release_on(cursor, refund.keys, refund.clear)

    def account_released(self, username_key: str) -> None:
        """The helpdesk unlocked the account: failures counted against it (from any
        browser not yet known) start again from zero."""
        self.storage.clear(f"login-acct/{_subject(username_key)}")

    # -- plain limits ------------------------------------------------------------------

    def hit_ip(self, name: str, amount: int, per_seconds: int, ip: str) -> Verdict:
        """A plain rate limit per client address (its /64 for IPv6)."""
        return self.hit(name, amount, per_seconds, ip_key(ip))

    def hit(self, name: str, amount: int, per_seconds: int, *ids: str) -> Verdict:
        """A plain rate limit (sign-ups per IP, e-mails per account)."""
        subject = "/".join(ids)
        if len(subject) > 100:
            subject = _subject(*ids)
        counted, value = self._acquire(f"{name}/{subject}", amount, per_seconds)
        return Verdict(True) if counted else Verdict(False, self._retry_after(value))

    def reset(self) -> None:
        self.storage.reset()


def limits_uri(redis_url: str) -> str:
    """``AUTHSERVER_REDIS_URL`` as ``limits`` names it: redis-py's ``unix://`` (a Redis on
    this machine's socket, accepted by the settings) is its ``redis+unix://``. Passed as it
    was, ``limits`` refused it and the server did not start."""
    if redis_url.startswith("unix://"):
        return "redis+" + redis_url
    return redis_url


def init_app(app: Flask) -> None:
    from authserver.db import get_database
    from authserver.ops import redis_options

    settings = app.config["AUTHSERVER"]
    if settings.redis_url:
        # Bounded waits: a hung Redis costs seconds, not a worker (ops.redis_options).
        uri = limits_uri(settings.redis_url)
        storage: Storage = storage_from_string(uri, **redis_options())  # type: ignore[assignment]
    else:
        storage = DatabaseStorage(get_database(app).engine)
    app.extensions[EXTENSION_KEY] = Throttle(
        storage,
        window=settings.throttle_window,
        account_failures=settings.throttle_account_failures,
        ip_failures=settings.throttle_ip_failures,
    )


def throttle() -> Throttle:
    found: Throttle = current_app.extensions[EXTENSION_KEY]
    return found
