"""``authserver secret rotate`` (issue 15): a new secret key, the old one kept as a fallback,
so that no browser becomes new (no flood of alert e-mails) and the OIDC signing key stays."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from authserver.cli import cli
from authserver.config import ConfigError, load_settings
from authserver.db import get_database
from authserver.models import OIDCSigningKey
from authserver.sessions.oidc import keys
from tests.alerts.console_helpers import add_user
from tests.conftest import Actions
from tests.establishments.test_flow import mails_to


def test_fallbacks_from_the_environment_or_the_instance_file(tmp_path: Path) -> None:
    base = {"AUTHSERVER_INSTANCE_PATH": str(tmp_path)}
    env = {
        **base,
        "AUTHSERVER_SECRET_KEY": "n" * 32,
        "AUTHSERVER_SECRET_KEY_FALLBACKS": "a" * 20 + ", " + "b" * 20,
    }
    assert load_settings(env).secret_key_fallbacks == ("a" * 20, "b" * 20)
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "AUTHSERVER_SECRET_KEY_FALLBACKS": "court"})
    assert caught.value.variable == "AUTHSERVER_SECRET_KEY_FALLBACKS"
    (tmp_path / "secret_key").write_text("c" * 40)
    (tmp_path / "secret_key_fallbacks").write_text("d" * 30 + "\n")
    assert load_settings(base).secret_key_fallbacks == ("d" * 30,)


def test_sealed_keys_name_their_secret_and_old_ones_still_open() -> None:
    sealed = keys.seal("ancienne-clé-0123456789", b"prive")
    assert sealed[1:9] == keys.sealing_key_id("ancienne-clé-0123456789")
    assert keys.unseal_with(("nouvelle-clé-0123456789", "ancienne-clé-0123456789"), sealed) == (
        b"prive",
        "ancienne-clé-0123456789",
    )
    legacy = sealed[9:]  # the format before key ids: nonce first
    assert keys.unseal_with(("x" * 20, "ancienne-clé-0123456789"), legacy)[0] == b"prive"


def test_rotation_keeps_browsers_known_and_the_oidc_key(make_app, smtp, tmp_path, monkeypatch):
    monkeypatch.delenv("AUTHSERVER_SECRET_KEY", raising=False)
    instance = tmp_path / "rotation-instance"
    db_url = f"sqlite:///{tmp_path / 'rotation.db'}"
    template_app = make_app()
    shutil.copy(get_database(template_app).engine.url.database, tmp_path / "rotation.db")
    env = {"AUTHSERVER_INSTANCE_PATH": str(instance), "AUTHSERVER_SECRET_KEY": ""}
    first = make_app(db_url, **env)
    old_key = first.config["SECRET_KEY"]
    add_user(first, "rita.rotation")
    browser = first.test_client()
    actions = Actions(browser, smtp)
    assert actions.login("rita.rotation").status_code == 302  # its first browser
    kid = first.test_client().get("/.well-known/jwks.json").get_json()["keys"][0]["kid"]

    result = CliRunner().invoke(
        cli,
        ["secret", "rotate"],
        env={"AUTHSERVER_INSTANCE_PATH": str(instance), "AUTHSERVER_DATABASE_URL": db_url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert (instance / "secret_key").read_text() != old_key
    assert (instance / "secret_key_fallbacks").read_text().split() == [old_key]
    assert oct(os.stat(instance / "secret_key").st_mode & 0o777) == "0o600"

    second = make_app(db_url, **env)
    assert second.config["SECRET_KEY"] != old_key
    assert second.config["SECRET_KEY_FALLBACKS"] == [old_key]
    # The same browser (its device cookie signed with the old key) on the new server.
    cookie = browser.get_cookie("authserver_device")
    again = second.test_client()
    again.set_cookie("authserver_device", cookie.value)
    assert Actions(again, smtp).login("rita.rotation").status_code == 302
    assert mails_to(smtp, "rita.rotation@example.fr", "Nouvelle connexion") == []
    assert again.get_cookie("authserver_device").value != cookie.value  # signed anew
    # The OIDC key is the same, and now sealed under the new secret.
    jwks = second.test_client().get("/.well-known/jwks.json").get_json()
    assert [key["kid"] for key in jwks["keys"]] == [kid]
    with second.app_context():
        from authserver import db

        settings = second.config["AUTHSERVER"]
        session = db.session()
        signed_kid, _ = keys.signing_key(
            session, settings.secret_key, fallbacks=settings.secret_key_fallbacks
        )
        session.commit()
        assert signed_kid == kid
        row = session.scalar(select(OIDCSigningKey))
        assert row.private_jwk_sealed[1:9] == keys.sealing_key_id(settings.secret_key)


def test_with_the_key_in_the_environment_the_command_says_what_to_do(tmp_path) -> None:
    result = CliRunner().invoke(
        cli,
        ["secret", "rotate"],
        env={"AUTHSERVER_INSTANCE_PATH": str(tmp_path), "AUTHSERVER_SECRET_KEY": "e" * 32},
    )
    assert result.exit_code == 0
    answer = json.loads(result.stdout)
    assert len(answer["secret_key"]) >= 40 and answer["fallbacks"] == 1
    assert "AUTHSERVER_SECRET_KEY_FALLBACKS" in result.stderr
    assert not (tmp_path / "secret_key").exists()
