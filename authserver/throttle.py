"""Throttling of failed logins and of e-mail-sending forms, built on ``limits``.

Counters live in memory (one process) or in Redis when ``AUTHSERVER_REDIS_URL``
is set, so that every instance shares them.

Lock-out resistance follows OWASP's "device cookies" idea: failures from
browsers that are not a known device of the account count against the account
for *untrusted* clients only; a browser that already logged in to the account
has its own counter. An attacker hammering an identifiant from elsewhere slows
down other unknown browsers, never the owner's usual one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import Flask, current_app
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

EXTENSION_KEY = "authserver.throttle"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0


class Throttle:
    def __init__(
        self,
        storage_uri: str,
        *,
        window: int,
        account_failures: int,
        ip_failures: int,
    ) -> None:
        self.storage = storage_from_string(storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.account_limit = RateLimitItemPerSecond(account_failures, window)
        self.ip_limit = RateLimitItemPerSecond(ip_failures, window)
        self.window = window

    def _keys(self, username_key: str, ip: str, device_key: str | None) -> list[tuple[object, ...]]:
        keys: list[tuple[object, ...]] = [(self.ip_limit, "login-ip", ip)]
        if device_key:
            keys.append((self.account_limit, "login-dev", username_key, device_key))
        else:
            keys.append((self.account_limit, "login-acct", username_key))
        return keys

    def check_login(self, username_key: str, ip: str, device_key: str | None) -> Verdict:
        """May this client try a password for this identifiant now?"""
        retry = 0
        for limit, *ids in self._keys(username_key, ip, device_key):
            if not self.limiter.test(limit, *ids):  # type: ignore[arg-type]
                retry = max(retry, self._retry_after(limit, ids))  # type: ignore[arg-type]
        return Verdict(allowed=retry == 0, retry_after=retry)

    def login_failed(self, username_key: str, ip: str, device_key: str | None) -> bool:
        """Count one failure; True when this failure just reached the account's limit."""
        reached = False
        for limit, *ids in self._keys(username_key, ip, device_key):
            self.limiter.hit(limit, *ids)  # type: ignore[arg-type]
            if ids[0] != "login-ip" and not self.limiter.test(limit, *ids):  # type: ignore[arg-type]
                reached = True
        return reached

    def login_succeeded(self, username_key: str, device_key: str | None) -> None:
        if device_key:
            self.limiter.clear(self.account_limit, "login-dev", username_key, device_key)

    def hit(self, name: str, amount: int, per_seconds: int, *ids: str) -> Verdict:
        """A plain rate limit (sign-ups per IP, e-mails per account)."""
        limit = RateLimitItemPerSecond(amount, per_seconds)
        if self.limiter.hit(limit, name, *ids):
            return Verdict(True)
        return Verdict(False, self._retry_after(limit, [name, *ids]))

    def _retry_after(self, limit: RateLimitItemPerSecond, ids: list[object]) -> int:
        stats = self.limiter.get_window_stats(limit, *ids)  # type: ignore[arg-type]
        return max(1, math.ceil(stats.reset_time - time.time()))

    def reset(self) -> None:
        self.storage.reset()


def init_app(app: Flask) -> None:
    settings = app.config["AUTHSERVER"]
    uri = settings.redis_url or "memory://"
    app.extensions[EXTENSION_KEY] = Throttle(
        uri,
        window=settings.throttle_window,
        account_failures=settings.throttle_account_failures,
        ip_failures=settings.throttle_ip_failures,
    )


def throttle() -> Throttle:
    return current_app.extensions[EXTENSION_KEY]
