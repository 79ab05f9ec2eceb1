"""Configuration: validated once, a bad value names its variable; the CLI says so in one line."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from authserver.config import ConfigError, load_settings
from tests.conftest import PASSWORD, Actions
from tests.services import free_port

CLI = str(Path(sys.executable).parent / "authserver")


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    return {
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }


# A server others reach names its identity provider (the embedded one is refused, issue 11).
HOSTED_IDENTITY = {
    "AUTHSERVER_IDENTITY_PROVIDER": "hosted",
    "AUTHSERVER_IDENTITY_URL": "https://identite.example.fr",
    "AUTHSERVER_IDENTITY_SECRET": "hosted-secret-0123456789",
}

BAD_VALUES = [
    ("AUTHSERVER_PORT", "cinq-mille"),
    ("AUTHSERVER_PORT", "0"),
    ("AUTHSERVER_PORT", "70000"),
    ("AUTHSERVER_BASE_URL", "localhost:5000"),
    ("AUTHSERVER_BASE_URL", "ftp://entreprise.example.fr"),
    ("AUTHSERVER_BASE_URL", "https://"),
    ("AUTHSERVER_DATABASE_URL", "bogus://"),
    ("AUTHSERVER_DATABASE_URL", "not a url at all"),
    ("AUTHSERVER_DATABASE_URL", "mysql://user@localhost/authserver"),
    ("AUTHSERVER_REDIS_URL", "http://localhost:6379"),
    ("AUTHSERVER_REDIS_URL", "redis://"),
    ("AUTHSERVER_MAIL_URL", "smtp://"),
    ("AUTHSERVER_MAIL_URL", "pop3://mail.example.fr"),
    ("AUTHSERVER_MAIL_URL", "smtp://mail.example.fr:port"),
    ("AUTHSERVER_MAIL_URL", "consol"),
    ("AUTHSERVER_MAIL_SENDER", "France Travail Pro"),
    ("AUTHSERVER_SECRET_KEY", "court"),
    ("AUTHSERVER_ORIGINS", "entreprise.example.fr"),
    ("AUTHSERVER_ORIGINS", " , "),
    ("AUTHSERVER_SESSION_IDLE_MINUTES", "trente"),
    ("AUTHSERVER_SESSION_IDLE_MINUTES", "0"),
    ("AUTHSERVER_SESSION_MAX_HOURS", "-1"),
    ("AUTHSERVER_ACTIVATION_TTL_HOURS", "1.5"),
    ("AUTHSERVER_MAIL_RETRY_BASE", "vite"),
    ("AUTHSERVER_MAIL_RETRY_MAX", "-3"),
    ("AUTHSERVER_MAIL_GATHER_SECONDS", "bientôt"),
    ("AUTHSERVER_MAIL_POLL_SECONDS", "souvent"),
    ("AUTHSERVER_HOST", "0.0.0.0:5000"),
    ("AUTHSERVER_HOST", "http://127.0.0.1"),
    ("AUTHSERVER_HOST", "mon serveur"),
    ("AUTHSERVER_HOST", "-serveur"),
    ("AUTHSERVER_DATABASE_URL", "postgresql+psycopg://u:pw@db:port/authserver"),
    ("AUTHSERVER_BASE_URL", "http://localhost:cinq"),
    # Console mail prints every link: development on this machine only.
    ("AUTHSERVER_MAIL_URL", "console"),
]

# Variables set alongside a BAD_VALUES entry (the console case needs a public base URL).
CONTEXT = {("AUTHSERVER_MAIL_URL", "console"): {"AUTHSERVER_BASE_URL": "https://pro.example.fr"}}


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_bad_value_names_its_variable(base_env, variable, value):
    with pytest.raises(ConfigError) as info:
        load_settings({**base_env, **CONTEXT.get((variable, value), {}), variable: value})
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert info.value.reason
    assert "\n" not in str(info.value)


def test_defaults(base_env):
    settings = load_settings(base_env)
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.base_url == "http://localhost:5000"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("authserver.db")
    assert settings.redis_url is None
    assert settings.mail.kind == "console"
    assert settings.mail_sender == "France Travail Pro <no-reply@localhost>"
    assert settings.rp_id == "localhost"
    assert settings.origins == ("http://localhost:5000",)
    assert not settings.secure_cookies
    assert settings.activation_ttl == 72 * 3600
    assert settings.reset_ttl == 3600
    assert (settings.session_idle, settings.session_absolute) == (30 * 60, 12 * 3600)
    assert (settings.mail_worker, settings.mail_poll) == (True, 1.0)


def test_base_url_follows_the_port(base_env):
    settings = load_settings({**base_env, "AUTHSERVER_PORT": "8080"})
    assert settings.base_url == "http://localhost:8080"
    assert settings.origins == ("http://localhost:8080",)


def test_https_deployment(base_env):
    settings = load_settings(
        {
            **base_env,
            "AUTHSERVER_BASE_URL": "https://connexion.entreprise.example.fr/",
            "AUTHSERVER_MAIL_URL": "smtp://mail.example.fr:587?starttls=1",
            "AUTHSERVER_ORIGINS": "https://connexion.entreprise.example.fr, https://app.example.fr/x",
            **HOSTED_IDENTITY,
        }
    )
    assert settings.base_url == "https://connexion.entreprise.example.fr"
    assert settings.secure_cookies
    assert settings.rp_id == "connexion.entreprise.example.fr"
    assert settings.origins == (
        "https://connexion.entreprise.example.fr",
        "https://app.example.fr",
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("console", ("console", "", 0, None, None, False, False)),
        ("smtp://127.0.0.1:2525", ("smtp", "127.0.0.1", 2525, None, None, False, False)),
        (
            "smtp://user%40x:p%3Ass@mail.example.fr:587?starttls=1",
            ("smtp", "mail.example.fr", 587, "user@x", "p:ss", False, True),
        ),
        ("smtps://mail.example.fr", ("smtp", "mail.example.fr", 465, None, None, True, False)),
        ("smtp://mail.example.fr", ("smtp", "mail.example.fr", 25, None, None, False, False)),
    ],
)
def test_mail_urls(base_env, url, expected):
    mail = load_settings({**base_env, "AUTHSERVER_MAIL_URL": url}).mail
    assert (
        mail.kind,
        mail.host,
        mail.port,
        mail.username,
        mail.password,
        mail.use_ssl,
        mail.use_starttls,
    ) == expected


@pytest.mark.parametrize(
    "base_url",
    [
        "https://localhost:5000",
        "https://connexion.entreprise.example.fr",
        "http://connexion.entreprise.example.fr",
        "http://192.0.2.10:5000",
    ],
)
def test_console_mail_is_refused_off_localhost(base_env, base_url):
    with pytest.raises(ConfigError) as info:
        load_settings({**base_env, "AUTHSERVER_BASE_URL": base_url})  # mail: console default
    assert info.value.variable == "AUTHSERVER_MAIL_URL"
    assert "smtp://" in info.value.reason
    smtp = {
        **base_env,
        "AUTHSERVER_BASE_URL": base_url,
        "AUTHSERVER_MAIL_URL": "smtp://m:25",
        **HOSTED_IDENTITY,
    }
    assert load_settings(smtp).mail.kind == "smtp"


@pytest.mark.parametrize(
    "base_url", ["http://localhost:5000", "http://127.0.0.1:8000", "http://[::1]:5000"]
)
def test_console_mail_on_this_machine(base_env, base_url):
    """`make run`'s defaults keep working."""
    settings = load_settings({**base_env, "AUTHSERVER_BASE_URL": base_url})
    assert settings.console_mail


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "srv-1.lan"])
def test_listen_hosts(base_env, host):
    assert load_settings({**base_env, "AUTHSERVER_HOST": host}).host == host


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHSERVER_DATABASE_URL", "postgresql+psycopg://authserver:s3cr3t-mdp@db:port/auth"),
        ("AUTHSERVER_DATABASE_URL", "postgresql+psycopg//authserver:s3cr3t-mdp@db/auth"),
        ("AUTHSERVER_REDIS_URL", "http://:s3cr3t-mdp@redis.example.fr:6379"),
        ("AUTHSERVER_BASE_URL", "ftp://admin:s3cr3t-mdp@pro.example.fr"),
    ],
)
def test_a_bad_url_is_echoed_without_its_password(base_env, variable, value):
    with pytest.raises(ConfigError) as info:
        load_settings({**base_env, variable: value})
    assert info.value.variable == variable
    assert "s3cr3t-mdp" not in str(info.value)
    assert ":***@" in str(info.value)


def test_an_unwritable_instance_path_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings({"AUTHSERVER_INSTANCE_PATH": "/proc/nope/instance"})
    assert info.value.variable == "AUTHSERVER_INSTANCE_PATH"
    assert "/proc/nope/instance" in info.value.reason


def test_secret_key_is_generated_once_and_kept(tmp_path):
    env = {"AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance")}
    first = load_settings(env).secret_key
    assert len(first) >= 32
    assert load_settings(env).secret_key == first
    key_file = tmp_path / "instance" / "secret_key"
    assert key_file.read_text().strip() == first
    assert key_file.stat().st_mode & 0o077 == 0  # readable by its owner only


# --------------------------------------------------------------------------- the CLI


def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    clean.update({"AUTHSERVER_SECURITY_LOG": "off", **env})
    return subprocess.run(
        [CLI, *args],
        env=clean,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess, variable: str) -> None:
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert variable in lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHSERVER_DATABASE_URL", "bogus://"),
        ("AUTHSERVER_DATABASE_URL", "mysql://user@localhost/authserver"),
        ("AUTHSERVER_PORT", "cinq-mille"),
        ("AUTHSERVER_MAIL_URL", "pop3://mail.example.fr"),
        ("AUTHSERVER_BASE_URL", "localhost:5000"),
    ],
)
def test_cli_bad_value_one_line(base_env, variable, value):
    result = run_cli({**base_env, variable: value}, "db", "upgrade")
    assert_one_clear_line(result, variable)


def test_cli_unwritable_sqlite_folder_one_line(base_env):
    result = run_cli(
        {**base_env, "AUTHSERVER_DATABASE_URL": "sqlite:////proc/nope/x.db"}, "db", "upgrade"
    )
    assert_one_clear_line(result, "AUTHSERVER_DATABASE_URL")
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AUTHSERVER_HOST": "0.0.0.0:5000"}, "AUTHSERVER_HOST"),
        ({"AUTHSERVER_INSTANCE_PATH": "/proc/nope/instance"}, "AUTHSERVER_INSTANCE_PATH"),
        ({"AUTHSERVER_BASE_URL": "https://pro.example.fr"}, "AUTHSERVER_MAIL_URL"),
    ],
)
def test_cli_other_bad_settings_one_line(base_env, env, variable):
    values = {**base_env, **env}
    if "AUTHSERVER_INSTANCE_PATH" in env:
        del values["AUTHSERVER_SECRET_KEY"]
    result = run_cli(values, "serve")
    assert_one_clear_line(result, variable)
    assert result.returncode == 2


def test_cli_unreachable_database_one_line(base_env):
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/authserver"
    result = run_cli({**base_env, "AUTHSERVER_DATABASE_URL": url}, "db", "upgrade")
    assert_one_clear_line(result, "AUTHSERVER_DATABASE_URL")


def test_cli_serve_refuses_a_bad_value_before_listening(base_env):
    result = run_cli({**base_env, "AUTHSERVER_DATABASE_URL": "bogus://"}, "serve")
    assert_one_clear_line(result, "AUTHSERVER_DATABASE_URL")


def test_cli_db_upgrade_then_user_create(base_env, tmp_path, make_app, smtp):
    db = tmp_path / "authserver.db"
    env = {**base_env, "AUTHSERVER_DATABASE_URL": f"sqlite:///{db}"}
    upgrade = run_cli(env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert db.exists()
    again = run_cli(env, "db", "upgrade")  # idempotent
    assert again.returncode == 0, again.stderr

    created = run_cli(
        env,
        "user",
        "create",
        "--username",
        "Jeanne.Durand",
        "--email",
        "jeanne.durand@entreprise.fr",
        "--role",
        "security",
        "--activated",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout.strip().splitlines()[-1])
    assert info["username"] == "Jeanne.Durand"
    assert info["role"] == "security"
    assert PASSWORD not in created.stdout + created.stderr

    inactive = run_cli(
        env,
        "user",
        "create",
        "--username",
        "paul.martin",
        "--email",
        "paul.martin@entreprise.fr",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert inactive.returncode == 0, inactive.stderr

    # The accounts work over HTTP on that database.
    app = make_app(f"sqlite:///{db}")
    actions = Actions(app.test_client(), smtp)
    assert actions.login("jeanne.durand").status_code == 302
    assert actions.login("paul.martin").status_code == 403  # not activated
    assert actions.login("jeanne.durand", "pas le bon mot de passe").status_code == 401

    duplicate = run_cli(
        env,
        "user",
        "create",
        "--username",
        "JEANNE.DURAND",
        "--email",
        "autre@entreprise.fr",
        "--activated",
    )
    assert duplicate.returncode != 0
    assert "Traceback" not in duplicate.stderr
    assert len(duplicate.stderr.strip().splitlines()) == 1


def test_cli_db_upgrade_creates_the_embedded_database_folder(tmp_path):
    """A fresh clone with only a secret key set: instance/ does not exist yet."""
    instance = tmp_path / "fresh" / "instance"
    env = {
        "AUTHSERVER_INSTANCE_PATH": str(instance),
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }
    result = run_cli(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (instance / "authserver.db").exists()


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["--username", "ab", "--email", "ab@entreprise.fr"], None),
        (["--username", "martin.dupont", "--email", "pas-une-adresse"], None),
        (
            ["--username", "martin.dupont", "--email", "m@entreprise.fr", "--password-stdin"],
            "password1234\n",
        ),
        (
            ["--username", "martin.dupont", "--email", "m@entreprise.fr", "--password-stdin"],
            "court\n",
        ),
    ],
)
def test_cli_user_create_refuses_bad_input(base_env, tmp_path, sqlite_template, args, stdin):
    db = tmp_path / "cli.db"
    shutil.copy(sqlite_template, db)  # already migrated
    env = {**base_env, "AUTHSERVER_DATABASE_URL": f"sqlite:///{db}"}
    result = run_cli(env, "user", "create", *args, stdin=stdin)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_cli_user_create_without_password_has_none(
    base_env, tmp_path, sqlite_template, make_app, smtp
):
    db = tmp_path / "cli.db"
    shutil.copy(sqlite_template, db)  # already migrated
    env = {**base_env, "AUTHSERVER_DATABASE_URL": f"sqlite:///{db}"}
    result = run_cli(
        env,
        "user",
        "create",
        "--username",
        "sans.mdp",
        "--email",
        "s@entreprise.fr",
        "--activated",
    )
    assert result.returncode == 0, result.stderr
    app = make_app(f"sqlite:///{db}")
    actions = Actions(app.test_client(), smtp)
    assert actions.login("sans.mdp", "").status_code == 400
    assert actions.login("sans.mdp", "nimporte quel mot de passe").status_code == 401
