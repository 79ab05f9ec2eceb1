"""The contract's ``authserver client create`` and the key commands ``authserver oidc ...``."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from authserver.cli import cli
from authserver.db import Database
from authserver.models import OAuthClient, OIDCSigningKey
from authserver.sessions.oidc import keys
from authserver.sessions.oidc.clients import hash_secret


@pytest.fixture
def env(tmp_path, sqlite_template):
    db = tmp_path / "cli.db"
    shutil.copy(sqlite_template, db)
    return {
        "AUTHSERVER_DATABASE_URL": f"sqlite:///{db}",
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }


def run(env, *args: str):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def rows(env) -> list[OAuthClient]:
    database = Database(env["AUTHSERVER_DATABASE_URL"])
    try:
        with database.session_scope() as session:
            return list(session.scalars(select(OAuthClient)))
    finally:
        database.dispose()


def test_client_create_prints_id_and_secret_once(env):
    result = run(
        env,
        "client",
        "create",
        "--name",
        "Kit CSP",
        "--redirect-uri",
        "https://csp.example.fr/callback",
        "--first-party",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["client_id"] and data["client_secret"]
    assert data["first_party"] is True and data["public"] is False
    (row,) = rows(env)
    assert row.secret_hash == hash_secret(data["client_secret"])
    assert row.redirect_uris == ["https://csp.example.fr/callback"]


def test_public_client_has_no_secret(env):
    result = run(
        env,
        "client",
        "create",
        "--name",
        "SPA",
        "--redirect-uri",
        "http://localhost:3000/cb",
        "--public",
    )
    data = json.loads(result.stdout)
    assert data["client_secret"] is None and data["token_endpoint_auth_method"] == "none"
    assert rows(env)[0].secret_hash is None


@pytest.mark.parametrize(
    "args",
    [
        ["--redirect-uri", "javascript:alert(1)"],
        ["--redirect-uri", "https://x.example/cb#frag"],
        ["--redirect-uri", "https://x.example/cb", "--scope", "openid admin"],
    ],
)
def test_bad_values_are_refused_with_one_line(env, args):
    result = run(env, "client", "create", "--name", "X", *args)
    assert result.exit_code == 2
    assert result.output.startswith("authserver : ") and "Traceback" not in result.output
    assert rows(env) == []


def _kids(env) -> list[tuple[str, bool]]:
    return [(key["kid"], key["signing"]) for key in json.loads(run(env, "oidc", "keys").stdout)]


def _time_passes(env, seconds: int) -> None:
    """Every key's times move ``seconds`` into the past, as if that long had gone by."""
    database = Database(env["AUTHSERVER_DATABASE_URL"])
    try:
        with database.session_scope() as session:
            for row in session.scalars(select(OIDCSigningKey)):
                row.created_at -= timedelta(seconds=seconds)
                row.signs_from -= timedelta(seconds=seconds)
    finally:
        database.dispose()


def test_rotate_publishes_ahead_list_and_retire_keys(env):
    first = json.loads(run(env, "oidc", "rotate-key").stdout)  # the very first: signs at once
    assert first["still_verifying"] == []
    second = json.loads(run(env, "oidc", "rotate-key").stdout)
    assert second["still_verifying"] == [first["kid"]]
    ahead = datetime.fromisoformat(second["signs_from"]) - datetime.fromisoformat(
        first["signs_from"]
    )
    assert ahead >= timedelta(seconds=2 * keys.JWKS_MAX_AGE) - timedelta(seconds=5)
    # Published (listed) at once, but the first key signs until the second one's time.
    assert _kids(env) == [(second["kid"], False), (first["kid"], True)]
    again = run(env, "oidc", "rotate-key")  # one rotation at a time
    assert again.exit_code == 2 and "attend déjà" in again.output
    refused = run(env, "oidc", "retire-key", first["kid"])
    assert refused.exit_code == 2 and "signe les jetons" in refused.output

    _time_passes(env, 2 * keys.JWKS_MAX_AGE + 1)
    assert _kids(env) == [(second["kid"], True), (first["kid"], False)]
    assert run(env, "oidc", "retire-key", second["kid"]).exit_code == 2  # the signing key
    assert run(env, "oidc", "retire-key", first["kid"]).exit_code == 0
    assert _kids(env) == [(second["kid"], True)]


def test_a_rotation_can_be_cancelled_or_made_immediate(env):
    first = json.loads(run(env, "oidc", "rotate-key").stdout)
    pending = json.loads(run(env, "oidc", "rotate-key").stdout)
    assert run(env, "oidc", "retire-key", pending["kid"]).exit_code == 0  # cancelled
    assert _kids(env) == [(first["kid"], True)]

    pending = json.loads(run(env, "oidc", "rotate-key").stdout)
    now = json.loads(run(env, "oidc", "rotate-key", "--immediately").stdout)
    assert now["still_verifying"] == [first["kid"]]  # the pending one was superseded
    assert _kids(env) == [(now["kid"], True), (first["kid"], False)]
    assert pending["kid"] not in {kid for kid, _ in _kids(env)}


def test_client_create_without_refresh_tokens(env):
    result = run(
        env,
        "client",
        "create",
        "--name",
        "Attestations",
        "--redirect-uri",
        "https://attestations.example.fr/cb",
        "--no-refresh-token",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["grant_types"] == ["authorization_code"]
    assert rows(env)[0].grant_types == ["authorization_code"]
    default = run(env, "client", "create", "--name", "Kit", "--redirect-uri", "https://k.fr/cb")
    assert json.loads(default.stdout)["grant_types"] == ["authorization_code", "refresh_token"]
