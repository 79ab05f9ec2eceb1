"""The security log (issue 4): one JSON line per login event and alert, for a SIEM.

AUTHSERVER_SECURITY_LOG is a setting like the others: read by load_settings (so values
given to it win over the process environment), checked at start-up (an unwritable path
stops the server with one line naming the variable), and each app writes where its own
settings say. A line carries event type, time, account, IP, user agent, device and
outcome, and never a password, token or cookie value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from itsdangerous import URLSafeSerializer

from authserver import create_app
from authserver.alerts.console.worker import DetectorWorker
from authserver.cli import cli
from authserver.config import PROJECT_ROOT, ConfigError, load_settings
from authserver.db import get_database
from authserver.models import utcnow
from tests.alerts.alert_helpers import (
    SAFARI_IOS,
    USERNAME,
    browser,
    login_ok,
    logout,
    not_me_link,
    path_of,
    received_alerts,
    wait_delivered,
)
from tests.alerts.console_helpers import add_events, add_user
from tests.conftest import PASSWORD, csrf_of, link_in

NEW_PASSWORD = "un tout nouveau mot de passe 2026"
WRONG = "ce n'est pas le bon mot de passe 99"
CORE_FIELDS = {"@timestamp", "ecs", "event", "service"}  # ECS (issue 15)


def action(e: dict) -> str:
    return e["event"]["action"]


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    return {
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }


# --------------------------------------------------------------------------- the setting


def test_the_setting_and_its_default(base_env, tmp_path):
    assert load_settings(base_env).security_log == "stdout"
    assert load_settings({**base_env, "AUTHSERVER_SECURITY_LOG": "off"}).security_log == "off"
    target = tmp_path / "security.jsonl"
    settings = load_settings({**base_env, "AUTHSERVER_SECURITY_LOG": str(target)})
    assert settings.security_log == str(target)


@pytest.mark.parametrize("where", ["missing-folder/security.jsonl", "."])
def test_an_unwritable_path_names_the_variable(base_env, tmp_path, where):
    with pytest.raises(ConfigError) as caught:
        load_settings({**base_env, "AUTHSERVER_SECURITY_LOG": str(tmp_path / where)})
    assert caught.value.variable == "AUTHSERVER_SECURITY_LOG"
    assert "AUTHSERVER_SECURITY_LOG" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_settings_built_otherwise_are_checked_when_the_app_starts(base_env, tmp_path):
    settings = load_settings(base_env).with_overrides(
        security_log=str(tmp_path / "missing-folder" / "x.jsonl")
    )
    with pytest.raises(ConfigError) as caught:
        create_app(settings=settings, test_config={"TESTING": True, "MAIL_WORKER_DISABLED": True})
    assert caught.value.variable == "AUTHSERVER_SECURITY_LOG"


def test_the_command_says_it_in_one_line(base_env, tmp_path):
    """This checkout's code (PYTHONPATH), as `authserver db upgrade` runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(base_env)
    env["AUTHSERVER_SECURITY_LOG"] = str(tmp_path / "missing-folder" / "security.jsonl")
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", "from authserver.cli import main; main()", "db", "upgrade"],
        env=env,
        cwd=str(PROJECT_ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert "AUTHSERVER_SECURITY_LOG" in output


def test_each_app_writes_where_its_own_settings_say(make_app, smtp, tmp_path, monkeypatch):
    """Two apps in one process; the environment names a third file, which neither uses."""
    environment_file = tmp_path / "environment.jsonl"
    monkeypatch.setenv("AUTHSERVER_SECURITY_LOG", str(environment_file))
    first_file, second_file = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first = make_app(AUTHSERVER_SECURITY_LOG=str(first_file))
    second = make_app(AUTHSERVER_SECURITY_LOG=str(second_file))
    quiet = make_app(AUTHSERVER_SECURITY_LOG="off")
    for app, name in ((first, "compte.un"), (second, "compte.deux"), (quiet, "compte.trois")):
        add_user(app, name)
        assert browser(app, smtp).login(name, WRONG).status_code == 401
    assert [(action(e), e["user"]["name"]) for e in lines(first_file)] == [("login", "compte.un")]
    assert [(action(e), e["user"]["name"]) for e in lines(second_file)] == [
        ("login", "compte.deux")
    ]
    assert not environment_file.exists() or lines(environment_file) == []


def test_the_detector_thread_writes_to_its_apps_log(make_app, tmp_path):
    target = tmp_path / "security.jsonl"
    app = make_app(AUTHSERVER_SECURITY_LOG=str(target))
    make_app(AUTHSERVER_SECURITY_LOG="off")  # configured last: not where the alert goes
    victim = add_user(app, "victime.b")
    now = utcnow()
    add_events(
        app,
        [
            {"user_id": victim, "outcome": "failure", "created_at": now - timedelta(seconds=s)}
            for s in range(10)
        ],
    )
    assert DetectorWorker(get_database(app), 30, app).run_once() == 1
    (line,) = [e for e in lines(target) if action(e) == "burst_alert"]
    assert line["authserver"]["kind"] == "failure_burst_account"
    assert line["user"]["name"] == "victime.b"
    assert line["event"]["kind"] == "alert"
    assert set(line) >= CORE_FIELDS


def test_the_detect_command_logs_its_alerts(app, tmp_path):
    target = tmp_path / "cli.jsonl"
    victim = add_user(app, "victime.b")
    add_events(
        app,
        [
            {"user_id": victim, "outcome": "failure", "created_at": utcnow() - timedelta(seconds=s)}
            for s in range(10)
        ],
    )
    env = {
        "AUTHSERVER_DATABASE_URL": get_database(app).url,
        "AUTHSERVER_INSTANCE_PATH": app.instance_path,
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "AUTHSERVER_SECURITY_LOG": str(target),
    }
    result = CliRunner().invoke(cli, ["security", "detect"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [e["authserver"]["kind"] for e in lines(target) if action(e) == "burst_alert"] == [
        "failure_burst_account"
    ]


# --------------------------------------------------------------------------- the lines


def test_lines_say_who_when_where_how_and_never_a_secret(make_app, smtp, tmp_path):
    target = tmp_path / "security.jsonl"
    app = make_app(AUTHSERVER_SECURITY_LOG=str(target))
    secrets: list[str] = [PASSWORD, NEW_PASSWORD, WRONG]

    owner = browser(app, smtp, ip="192.0.2.10")
    owner.signup()
    activation = owner.activation_link()
    secrets.append(activation.rsplit("/", 1)[1])
    owner.client.get(path_of(activation))
    login_ok(owner)
    assert owner.login(USERNAME, WRONG).status_code in (302, 401)  # logged in: may redirect

    intruder = browser(app, smtp, ua=SAFARI_IOS, ip="203.0.113.66")
    assert intruder.login(USERNAME, WRONG).status_code == 401
    login_ok(intruder)
    (alert,) = received_alerts(app, smtp)
    link = not_me_link(alert)
    secrets.append(link.rsplit("/", 1)[1])
    for who in (owner, intruder):
        for name in ("authserver_session", "authserver_device", "authserver_flask"):
            cookie = who.client.get_cookie(name)
            if cookie is not None:
                secrets.append(cookie.value)
        device_cookie = who.client.get_cookie("authserver_device")
        serializer = URLSafeSerializer(app.config["SECRET_KEY"], salt="authserver.device-cookie")
        secrets.append(serializer.loads(device_cookie.value))
    page = owner.client.get(path_of(link)).get_data(as_text=True)
    secrets.append(csrf_of(page))
    assert owner.client.post(path_of(link), data={"csrf_token": csrf_of(page)}).status_code == 200

    wait_delivered(app)
    reset = link_in(
        next(m for m in smtp.messages if "/password/reset/" in str(m.get_body(("plain",)))),
        "/password/reset/",
    )
    secrets.append(reset.rsplit("/", 1)[1])
    form = owner.client.get(path_of(reset)).get_data(as_text=True)
    owner.client.post(
        path_of(reset),
        data={
            "csrf_token": csrf_of(form),
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        },
    )
    assert owner.login(USERNAME, NEW_PASSWORD).status_code == 302
    logout(owner)
    stranger = browser(app, smtp, ip="198.51.100.5")
    for _ in range(6):
        stranger.login(USERNAME, WRONG)

    raw = target.read_text(encoding="utf-8")
    events = lines(target)
    kinds = {action(e) for e in events}
    assert {"login", "new_device_alert", "not_me_report", "account_throttled"} <= kinds
    for event in events:
        assert set(event) >= CORE_FIELDS, event
        assert event["ecs"]["version"].startswith("8.")
        assert event["event"]["kind"] in ("event", "alert") and event["event"]["category"]
    logins = [e for e in events if action(e) == "login"]
    assert {e["event"]["outcome"] for e in logins} == {"success", "failure"}
    assert all("user" in e for e in logins)
    assert any(e["event"].get("reason", "").startswith("throttled") for e in logins)
    assert {tuple(e["event"]["category"]) for e in logins} == {("authentication",)}
    intruder_login = next(
        e
        for e in logins
        if e["source"]["ip"] == "203.0.113.66" and e["event"]["outcome"] == "success"
    )
    assert intruder_login["user"]["name"] == USERNAME
    assert "iPhone" in intruder_login["user_agent"]["original"]
    assert isinstance(intruder_login["authserver"]["device"], int)
    (new_device,) = [e for e in events if action(e) == "new_device_alert"]
    assert (new_device["authserver"]["device"], new_device["source"]["ip"]) == (
        intruder_login["authserver"]["device"],
        "203.0.113.66",
    )
    (report,) = [e for e in events if action(e) == "not_me_report"]
    assert report["authserver"]["severity"] == "high" and report["event"]["severity"] == 73
    assert report["authserver"]["device"] == intruder_login["authserver"]["device"]
    for secret in secrets:
        assert secret and secret not in raw, f"a secret in the security log: {secret[:12]}…"
