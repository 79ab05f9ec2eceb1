"""What a server others reach must not expose (issue 11): development adapters and pages,
answers to host names it does not serve (DNS rebinding), metrics."""

from __future__ import annotations

import pytest

from authserver.config import ConfigError, load_settings
from tests.conftest import is_local_base_url


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    return {
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "AUTHSERVER_MAIL_URL": "smtp://mail.example.fr:25",
    }


PUBLIC = ["https://pro.example.fr", "http://pro.example.fr", "https://localhost:5000"]


@pytest.mark.parametrize("base_url", PUBLIC)
def test_embedded_identity_provider_is_refused_off_this_machine(base_env, base_url):
    """Its development page has « Approuver »: a user certified themselves in production."""
    env = {**base_env, "AUTHSERVER_BASE_URL": base_url}
    for provider in (None, "embedded"):  # the default included
        values = env if provider is None else {**env, "AUTHSERVER_IDENTITY_PROVIDER": provider}
        with pytest.raises(ConfigError) as info:
            load_settings(values)
        assert info.value.variable == "AUTHSERVER_IDENTITY_PROVIDER"
        assert "onfido" in info.value.reason
        assert "\n" not in str(info.value)
    hosted = {
        **env,
        "AUTHSERVER_IDENTITY_PROVIDER": "hosted",
        "AUTHSERVER_IDENTITY_URL": "https://identite.example.fr",
        "AUTHSERVER_IDENTITY_SECRET": "s" * 16,
    }
    assert load_settings(hosted).identity_provider == "hosted"


def test_embedded_identity_provider_on_this_machine(base_env):
    assert load_settings(base_env).identity_provider == "embedded"
    assert is_local_base_url(None) and not is_local_base_url("https://localhost")


def test_dev_identity_page_only_for_this_machine(app, client, actions):
    actions.create_active_account()
    actions.login()
    assert client.get("/dev/identity/abc").status_code == 200
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/dev/identity/abc", environ_overrides=remote).status_code == 404
    relayed = {"X-Forwarded-For": "192.0.2.7"}
    assert client.get("/dev/identity/abc", headers=relayed).status_code == 404
    page = client.get("/dev/identity/abc").get_data(as_text=True)
    token = actions.csrf("/espace")
    answer = client.post(
        "/dev/identity/abc",
        data={"outcome": "approved", "csrf_token": token},
        environ_overrides=remote,
    )
    assert answer.status_code == 404
    assert "Approuver" in page


# ------------------------------------------------------------------------- host names


@pytest.mark.parametrize(
    ("host", "peer", "allowed"),
    [
        ("pro.example.fr", "192.0.2.7", True),
        ("PRO.example.fr:443", "192.0.2.7", True),
        ("pro.example.fr.", "192.0.2.7", True),
        ("services.pro.example.fr", "192.0.2.7", False),
        ("evil.example", "127.0.0.1", False),  # DNS rebinding onto this machine
        ("evil.example", "192.0.2.7", False),
        ("localhost:5000", "127.0.0.1", True),  # local tools and probes
        ("127.0.0.1:5000", "127.0.0.1", True),
        ("[::1]:5000", "::1", True),
        ("localhost", "192.0.2.7", False),
        ("", "127.0.0.1", False),
        ("pro.example.fr@evil.example", "192.0.2.7", False),
    ],
)
def test_only_configured_host_names_are_answered(make_app, host, peer, allowed):
    app = make_app(
        AUTHSERVER_BASE_URL="https://pro.example.fr", AUTHSERVER_MAIL_URL="smtp://m.example:25"
    )
    client = app.test_client()
    for path in ("/login", "/webauthn/login/options", "/auth/verify", "/oauth/authorize"):
        method = client.post if path.startswith("/webauthn") else client.get
        response = method(
            path, headers={"Host": host}, environ_overrides={"REMOTE_ADDR": peer}, json={}
        )
        if allowed:
            assert response.status_code != 400 or path == "/oauth/authorize", (path, host)
        else:
            assert response.status_code == 400, (path, host)
            if path != "/login":
                assert response.get_json()["error"] == "invalid_host"
            else:
                assert "ne répond pas" in response.get_data(as_text=True)


def test_allowed_hosts_setting(make_app):
    app = make_app(
        AUTHSERVER_BASE_URL="https://pro.example.fr",
        AUTHSERVER_MAIL_URL="smtp://m.example:25",
        AUTHSERVER_ALLOWED_HOSTS="auth.example.fr, .portail.example.fr",
    )
    client = app.test_client()
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    for host, status in [
        ("auth.example.fr", 200),
        ("a.portail.example.fr", 200),
        ("portail.example.fr", 400),
        ("evil.example", 400),
        ("pro.example.fr", 200),
    ]:
        response = client.get("/login", headers={"Host": host}, environ_overrides=remote)
        assert response.status_code == status, host


def test_probes_answer_any_host(client):
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert (
        client.get(
            "/healthz", headers={"Host": "10.0.0.5:5000"}, environ_overrides=remote
        ).status_code
        == 200
    )
    assert (
        client.get(
            "/login", headers={"Host": "10.0.0.5:5000"}, environ_overrides=remote
        ).status_code
        == 400
    )


def test_bad_allowed_hosts_names_its_variable(base_env):
    env = {**base_env, "AUTHSERVER_BASE_URL": "http://localhost:5000"}
    with pytest.raises(ConfigError) as info:
        load_settings({**env, "AUTHSERVER_ALLOWED_HOSTS": "https://pro.example.fr"})
    assert info.value.variable == "AUTHSERVER_ALLOWED_HOSTS"


def test_dev_mailbox_refuses_a_rebinding_page(make_app):
    """evil.example re-pointed at 127.0.0.1 must not read the mailbox from the victim's browser."""
    client = make_app(AUTHSERVER_MAIL_URL="console").test_client()
    assert client.get("/dev/mailbox").status_code == 200
    assert client.get("/dev/mailbox", headers={"Host": "evil.example:5000"}).status_code == 400


# ----------------------------------------------------------------------------- metrics


def test_metrics_only_for_this_machine_without_a_token(client):
    assert client.get("/metrics").status_code == 200
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/metrics", environ_overrides=remote).status_code == 404
    relayed = client.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"})
    assert relayed.status_code == 404
    assert b"authserver" not in relayed.data


def test_metrics_with_a_bearer_token(make_app):
    token = "scrape-token-0123456789"
    app = make_app(AUTHSERVER_METRICS_TOKEN=token)
    client = app.test_client()
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    refused = client.get("/metrics", environ_overrides=remote)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = {"Authorization": "Bearer scrape-token-0123456780"}
    assert client.get("/metrics", headers=wrong, environ_overrides=remote).status_code == 401
    odd = {"Authorization": "Bearer \xff\xfe"}
    assert client.get("/metrics", headers=odd, environ_overrides=remote).status_code == 401
    right = {"Authorization": f"Bearer {token}"}
    answer = client.get("/metrics", headers=right, environ_overrides=remote)
    assert answer.status_code == 200
    assert "authserver" in answer.get_data(as_text=True)


def test_short_metrics_token_names_its_variable(base_env):
    with pytest.raises(ConfigError) as info:
        load_settings({**base_env, "AUTHSERVER_METRICS_TOKEN": "court"})
    assert info.value.variable == "AUTHSERVER_METRICS_TOKEN"
