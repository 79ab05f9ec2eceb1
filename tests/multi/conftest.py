"""One cluster per test session: PostgreSQL, Redis, SMTP and two ``authserver serve``."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.multi.cluster import Browser, Cluster
from tests.services import PostgresServer, RedisServer, SMTPServer
from tests.softauthn import SoftAuthenticator

# Created by the CLI while the servers boot; each test uses its own account.
USERS = (
    "multi.passkey",
    "multi.revoke",
    "multi.throttle.ab",
    "multi.throttle.a",
    "multi.outage",
    "multi.proxied",
)


@dataclass
class Setup:
    cluster: Cluster
    postgres: PostgresServer
    redis: RedisServer
    smtp: SMTPServer
    database_url: str


@pytest.fixture(scope="session")
def multi(
    request: pytest.FixtureRequest,
    postgres: PostgresServer,
    redis_server: RedisServer,
    pg_template: str,
) -> Iterator[Setup]:
    # A copy of the migrated template: migrating again took seconds of this worker's time.
    database_url = postgres.create_database(f"multi_{uuid.uuid4().hex[:8]}", pg_template)
    smtp = SMTPServer().start()
    cluster = Cluster(database_url, redis_server.url, smtp.url)
    try:
        cluster.start()
        cluster.create_users(*USERS)
        cluster.wait_healthy()
        yield Setup(cluster, postgres, redis_server, smtp, database_url)
    finally:
        cluster.stop()
        smtp.stop()
        if request.session.testsfailed:
            print(f"\nmulti-instance server logs kept in {cluster.tmpdir}")
        else:
            shutil.rmtree(cluster.tmpdir, ignore_errors=True)


@dataclass
class PasskeyUser:
    username: str
    authenticator: SoftAuthenticator


@pytest.fixture(scope="session")
def passkey_user(multi: Setup) -> PasskeyUser:
    """multi.passkey with a passkey enrolled on instance A (password login first)."""
    cluster = multi.cluster
    browser = Browser()
    answer = browser.password_login(cluster.a, "multi.passkey")
    assert answer.status == 302, answer.text[:500]
    authenticator = SoftAuthenticator(rp_id="localhost", origin=cluster.origin)
    browser.register_passkey(cluster.a, authenticator)
    return PasskeyUser("multi.passkey", authenticator)
