"""``authserver session revoke``: an operator ends the sessions of one account or of all
(ASVS 7.4.5), effective on the very next request."""

from __future__ import annotations

from click.testing import CliRunner
from flask import Flask

from authserver.cli import cli
from authserver.db import get_database
from tests.conftest import Actions


def run_cli(app: Flask, *args: str):
    env = {
        "AUTHSERVER_DATABASE_URL": get_database(app).url,
        "AUTHSERVER_INSTANCE_PATH": app.instance_path,
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "AUTHSERVER_MAIL_WORKER": "0",
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_revoke_one_account_then_all(app, smtp):
    martin = Actions(app.test_client(), smtp)
    martin.create_active_account("martin.dupont")
    claire = Actions(app.test_client(), smtp)
    claire.create_active_account("claire.martin")
    assert martin.login("martin.dupont").status_code == 302
    assert claire.login("claire.martin").status_code == 302

    result = run_cli(app, "session", "revoke", "--username", "Martin.Dupont")
    assert result.exit_code == 0, result.output
    assert "1 session fermée" in result.output
    assert martin.client.get("/auth/verify").status_code == 401
    assert claire.client.get("/auth/verify").status_code == 200

    result = run_cli(app, "session", "revoke", "--all-users")
    assert result.exit_code == 0 and "1 session fermée" in result.output
    assert claire.client.get("/auth/verify").status_code == 401


def test_revoke_refuses_unclear_or_unknown_targets(app):
    for args in ((), ("--username", "x", "--all-users")):
        result = CliRunner().invoke(cli, ["session", "revoke", *args])
        assert result.exit_code == 2 and "--username" in result.output
    result = run_cli(app, "session", "revoke", "--username", "personne.inconnue")
    assert result.exit_code == 2
    assert "aucun compte" in result.output
    assert "Traceback" not in result.output
