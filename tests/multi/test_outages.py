"""PostgreSQL restarted and Redis stopped under a running cluster: clean 503s, then recovery.

While a dependency is down every request that needs it is answered 503 (the contract's JSON
on the API, the French error page elsewhere), never a 500 or a traceback; ``/healthz`` stays
200 (the process is alive: a load balancer must not kill it) and ``/readyz`` turns 503 (take
it out of rotation). When the dependency is back, everything works again by itself and
nothing committed before is lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tests.multi.cluster import Browser, Instance, passkey_login, status_of, wait_until
from tests.multi.conftest import PasskeyUser, Setup

pytestmark = [pytest.mark.pg, pytest.mark.xdist_group("multi")]


def ready(instance: Instance) -> bool:
    return status_of(Browser(timeout=5), instance, "GET", "/readyz") == 200


class Hammer:
    """A background browser asking both instances, round after round, what needs the database."""

    def __init__(self, instances: list[Instance], session_token: str) -> None:
        self.instances = instances
        self.browser = Browser(cookies={"authserver_session": session_token}, timeout=10)
        self.seen: list[tuple[float, str, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        requests = [
            ("GET", "/healthz", None),
            ("GET", "/auth/verify", None),
            ("GET", "/espace", None),
            ("POST", "/webauthn/login/options", {"username": "multi.outage"}),
            ("GET", "/readyz", None),
        ]
        while not self._stop.is_set():
            for instance in self.instances:
                for method, path, body in requests:
                    try:
                        reply = self.browser.request(
                            instance, method, path, json_body=body, keep_cookies=False
                        )
                        status, text = reply.status, reply.text[:2000]
                    except OSError as exc:
                        status, text = 0, repr(exc)
                    self.seen.append((time.monotonic(), path, status, text))
            time.sleep(0.02)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)

    def statuses(self, path: str, since: float = 0.0) -> Counter[int]:
        return Counter(status for t, p, status, _ in self.seen if p == path and t >= since)


CLEAN = {200, 302, 503}


def unhandled(logs: str) -> str:
    """The servers' tracebacks of unhandled errors, for a failure message that says why."""
    lines = logs.splitlines()
    markers = ("unhandled error", "Error handling request")  # ours, gunicorn's
    starts = [i for i, line in enumerate(lines) if any(m in line for m in markers)]
    return "\n".join("\n".join(lines[i : i + 40]) for i in starts[:2])


def assert_clean_503(reply, api: bool) -> None:
    assert reply.status == 503, (reply.status, reply.text[:500])
    assert "Traceback" not in reply.text
    if api:
        assert reply.json()["error"] == "unavailable"
    else:
        assert "text/html" in (reply.header("Content-Type") or "")


def test_postgresql_restart_mid_run(multi: Setup, passkey_user: PasskeyUser):
    cluster = multi.cluster
    a, b = cluster.a, cluster.b
    browser = Browser()
    assert browser.password_login(a, "multi.outage").status == 302
    token = browser.cookies["authserver_session"]
    logged_in = Browser(cookies={"authserver_session": token})
    assert logged_in.get(b, "/auth/verify").status == 200

    with Hammer([a, b], token) as hammer:
        time.sleep(0.5)
        multi.postgres.stop(cleanup=False)
        down_at = time.monotonic()
        try:
            time.sleep(0.3)
            for instance in (a, b):
                assert Browser().get(instance, "/healthz").status == 200
                readyz = Browser().get(instance, "/readyz")
                assert readyz.status == 503 and readyz.json()["checks"]["database"] != "ok"
                # Every kind of answer, cleanly: forward-auth, pages, the JSON API, a form.
                assert_clean_503(logged_in.get(instance, "/auth/verify"), api=True)
                assert_clean_503(logged_in.get(instance, "/espace"), api=False)
                assert_clean_503(
                    Browser().post_json(
                        instance, "/webauthn/login/options", {"username": "multi.outage"}
                    ),
                    api=True,
                )
                assert_clean_503(Browser().password_login(instance, "multi.outage"), api=False)
            time.sleep(0.5)
        finally:
            multi.postgres.start()
        up_at = time.monotonic()
        for instance in (a, b):
            wait_until(lambda i=instance: ready(i), timeout=20, what=f"{instance.name} /readyz")
        ready_at = time.monotonic()
        # Every worker and thread, each pooled connection: all work again.
        for _ in range(12):
            for instance in (a, b):
                assert logged_in.get(instance, "/auth/verify").status == 200
                assert logged_in.get(instance, "/account/passkeys").status == 200
        time.sleep(0.3)

    # Committed before the restart, still there after: the session and the passkey.
    other = Browser()
    assert passkey_login(other, b, a, passkey_user.authenticator).status == 200
    assert Browser().password_login(b, "multi.outage").status == 302

    unexpected = [(p, status, text) for _, p, status, text in hammer.seen if status not in CLEAN]
    assert not unexpected, (unexpected[:3], unhandled(cluster.logs()))
    assert set(hammer.statuses("/healthz")) == {200}
    assert hammer.statuses("/auth/verify", since=down_at + 0.2)[503] > 0
    assert hammer.statuses("/readyz", since=down_at + 0.2)[503] > 0
    assert hammer.statuses("/auth/verify", since=ready_at)[200] > 0
    bad = [text for _, _, status, text in hammer.seen if status >= 500 and "Traceback" in text]
    assert not bad
    assert up_at - down_at < 30


def test_redis_stopped_then_restarted(multi: Setup, passkey_user: PasskeyUser):
    cluster = multi.cluster
    a, b = cluster.a, cluster.b
    multi.redis.stop(cleanup=False)
    try:
        for instance in (a, b):
            assert Browser().get(instance, "/healthz").status == 200
            readyz = Browser().get(instance, "/readyz")
            assert readyz.status == 503, readyz.text
            assert readyz.json()["checks"]["redis"] != "ok"
            # Ceremonies and throttling live in Redis: refused cleanly, not a 500.
            assert_clean_503(Browser().post_json(instance, "/webauthn/login/options", {}), api=True)
            assert_clean_503(Browser().password_login(instance, "multi.outage"), api=False)
    finally:
        multi.redis.start()
    for instance in (a, b):
        wait_until(lambda i=instance: ready(i), timeout=20, what=f"{instance.name} /readyz")
    for _ in range(4):
        assert passkey_login(Browser(), a, b, passkey_user.authenticator).status == 200
        assert passkey_login(Browser(), b, a, passkey_user.authenticator).status == 200
