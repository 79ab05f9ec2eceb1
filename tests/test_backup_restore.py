"""Backup and restore (issue 15, docs/operations.md): a copy taken while the server runs,
restored with the secret key on a new machine, gives back every account, passkey, known
browser and OIDC signing key."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from authserver.cli import cli
from authserver.db import get_database
from tests.alerts.console_helpers import add_user, client_as
from tests.conftest import Actions
from tests.establishments.test_flow import mails_to
from tests.staff_login import enrol_passkey, login_in


def test_a_backup_taken_while_running_restores_everything(make_app, smtp, tmp_path, monkeypatch):
    monkeypatch.delenv("AUTHSERVER_SECRET_KEY", raising=False)
    old = tmp_path / "old-machine"
    old.mkdir()
    template = make_app()
    shutil.copy(get_database(template).engine.url.database, old / "authserver.db")
    env = {"AUTHSERVER_INSTANCE_PATH": str(old), "AUTHSERVER_SECRET_KEY": ""}
    first = make_app(f"sqlite:///{old / 'authserver.db'}", **env)
    add_user(first, "bruno.sauvegarde")
    browser = client_as(first, smtp, "bruno.sauvegarde", passkey=False)
    auth = enrol_passkey(first, browser)
    kid = first.test_client().get("/.well-known/jwks.json").get_json()["keys"][0]["kid"]
    device_cookie = browser.get_cookie("authserver_device").value

    backup = tmp_path / "backup.db"
    result = CliRunner().invoke(
        cli,
        ["db", "backup", str(backup)],
        env={
            "AUTHSERVER_INSTANCE_PATH": str(old),
            "AUTHSERVER_DATABASE_URL": f"sqlite:///{old / 'authserver.db'}",
            "AUTHSERVER_SECRET_KEY": "",
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Sauvegarde écrite" in result.output
    again = CliRunner().invoke(
        cli,
        ["db", "backup", str(backup)],
        env={
            "AUTHSERVER_DATABASE_URL": f"sqlite:///{old / 'authserver.db'}",
            "AUTHSERVER_INSTANCE_PATH": str(old),
        },
    )
    assert again.exit_code == 2 and "existe déjà" in again.output

    # The new machine: the backup and the secret key, nothing else (no ceremonies file).
    new = tmp_path / "new-machine"
    new.mkdir()
    shutil.copy(backup, new / "authserver.db")
    shutil.copy(old / "secret_key", new / "secret_key")
    second = make_app(
        f"sqlite:///{new / 'authserver.db'}",
        AUTHSERVER_INSTANCE_PATH=str(new),
        AUTHSERVER_SECRET_KEY="",
    )
    smtp.clear()
    returning = second.test_client()
    returning.set_cookie("authserver_device", device_cookie)
    login_in(returning, auth)  # the passkey works
    assert Actions(returning, smtp).login("bruno.sauvegarde").status_code == 302
    assert mails_to(smtp, "bruno.sauvegarde@example.fr", "Nouvelle connexion") == []
    jwks = second.test_client().get("/.well-known/jwks.json").get_json()
    assert [key["kid"] for key in jwks["keys"]] == [kid]


def test_postgresql_is_backed_up_with_pg_dump(tmp_path) -> None:
    result = CliRunner().invoke(
        cli,
        ["db", "backup", str(tmp_path / "x.db")],
        env={
            "AUTHSERVER_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1:1/x",
            "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
            "AUTHSERVER_SECRET_KEY": "k" * 32,
        },
    )
    assert result.exit_code == 2 and "pg_dump" in result.output
