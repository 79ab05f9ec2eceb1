"""``GET /metrics``: the Prometheus text format, each family of the issue moved by real traffic.

Counters live in the test process's registry and add up across tests: every check here is a
difference between two scrapes around the actions that should move it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from authserver.db import get_database
from authserver.mail import worker_of
from authserver.mail.delivery import deliver_due
from authserver.models import OutboxMail, utcnow
from tests.conftest import Actions
from tests.webauthn.test_api import authenticator, create_accounts, new_browser

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def kinds(samples: Samples, name: str, label: str) -> Iterable[str]:
    return {dict(key[1])[label] for key in samples if key[0] == name}


@pytest.fixture
def worker_stopped(app: Flask) -> Flask:
    worker_of(app).stop()
    return app


def test_logins_by_method_and_outcome(app: Flask, actions: Actions):
    actions.create_active_account()
    client = app.test_client()
    before = scrape(client)
    assert actions.login(password="not the right password at all").status_code == 401
    assert actions.login().status_code == 302
    after = scrape(client)
    name = "authserver_logins_total"
    assert moved(before, after, name, method="password", outcome="failure") == 1
    assert moved(before, after, name, method="password", outcome="success") == 1


def test_passkey_ceremonies_by_outcome(app: Flask, smtp):
    create_accounts(app, smtp, "martin.dupont")
    browser = new_browser(app, smtp)
    browser.password_login()
    passkey = authenticator()
    client = app.test_client()
    before = scrape(client)
    browser.register(passkey)
    browser.logout()
    assertion = passkey.assert_(browser.login_options())
    assert browser.login_verify(assertion).status_code == 200
    browser.logout()
    assert browser.login_verify(assertion).status_code >= 400  # replayed: refused
    after = scrape(client)
    name = "authserver_passkey_ceremonies_total"
    assert moved(before, after, name, ceremony="registration", outcome="success") == 1
    assert moved(before, after, name, ceremony="authentication", outcome="success") == 1
    refused = [
        outcome
        for outcome in kinds(after, name, "outcome")
        if outcome != "success"
        and moved(before, after, name, ceremony="authentication", outcome=outcome) == 1
    ]
    assert len(refused) == 1, refused
    assert moved(before, after, "authserver_logins_total", method="passkey", outcome="success") == 1


def test_every_throttled_request_counts_once(app: Flask, actions: Actions, client: FlaskClient):
    actions.create_active_account()
    before = scrape(client)
    # Password login: counted by the login view itself, not a second time for its 429.
    statuses = [actions.login(password=f"wrong password number {i}").status_code for i in range(6)]
    assert statuses[-1] == 429 and statuses.count(429) == 1, statuses
    # A throttle with no metrics code of its own: counted from its 429.
    csrf = actions.csrf("/password/forgot")
    statuses = [
        client.post(
            "/password/forgot", data={"csrf_token": csrf, "username": "quelquun"}
        ).status_code
        for _ in range(11)
    ]
    assert statuses[-1] == 429 and statuses.count(429) == 1, statuses
    after = scrape(client)
    name = "authserver_throttled_total"
    assert moved(before, after, name, kind="login") == 1
    assert moved(before, after, name, kind="forgot_password") == 1
    total = sum(moved(before, after, name, kind=kind) for kind in kinds(after, name, "kind"))
    assert total == 2


def test_alerts_raised(app: Flask, smtp):
    create_accounts(app, smtp, "martin.dupont")
    first = new_browser(app, smtp)
    first.password_login()  # the account's first browser: known without an alert
    client = app.test_client()
    before = scrape(client)
    new_browser(app, smtp).password_login()  # another browser: one alert
    after = scrape(client)
    assert moved(before, after, "authserver_alerts_total", kind="new_device_alert") == 1


def test_outbox_depth_age_and_delivery_failures(worker_stopped: Flask, smtp):
    app = worker_stopped
    database = get_database(app)
    old = utcnow() - timedelta(seconds=90)
    with database.session_scope() as session:
        session.execute(
            insert(OutboxMail),
            [
                {
                    "created_at": old + timedelta(seconds=i),
                    "kind": "test",
                    "recipient": f"r{i}@entreprise.fr",
                    "subject": "s",
                    "body_text": "b",
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": old,
                }
                for i in range(3)
            ],
        )
    client = app.test_client()
    before = scrape(client)
    assert value(before, "authserver_outbox_pending") == 3
    assert 90 <= value(before, "authserver_outbox_oldest_pending_seconds") < 120
    assert value(before, "authserver_outbox_failed") == 0

    smtp.stop()
    assert deliver_due(database, worker_of(app).transport, app.config["AUTHSERVER"]) == (0, 1)
    after = scrape(client)
    assert moved(before, after, "authserver_mail_delivery_failures_total") == 1
    assert value(after, "authserver_outbox_pending") == 3

    smtp.start()
    with database.session_scope() as session:
        session.execute(OutboxMail.__table__.update().values(next_attempt_at=old))
    assert deliver_due(database, worker_of(app).transport, app.config["AUTHSERVER"]) == (3, 0)
    done = scrape(client)
    assert moved(after, done, "authserver_mail_sent_total") == 3
    assert value(done, "authserver_outbox_pending") == 0
    assert value(done, "authserver_outbox_oldest_pending_seconds") == 0


def test_request_latency_histograms_per_endpoint(app: Flask, client: FlaskClient):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/login").status_code == 200
    assert client.get("/auth/verify").status_code == 401  # the WSGI fast path
    time.sleep(0.01)
    after = scrape(client)
    name = "authserver_request_duration_seconds"
    login = {"endpoint": "accounts.login", "method": "GET"}
    verify = {"endpoint": "forward_auth.verify", "method": "GET"}
    assert moved(before, after, f"{name}_count", **login) == 3
    assert moved(before, after, f"{name}_bucket", le="+Inf", **login) == 3
    assert moved(before, after, f"{name}_sum", **login) > 0
    assert moved(before, after, f"{name}_count", **verify) == 1
    buckets = sorted(
        float(dict(labels)["le"])
        for (sample, labels) in after
        if sample == f"{name}_bucket" and dict(labels).get("endpoint") == "accounts.login"
    )
    assert buckets[0] == 0.001 and buckets[-1] == float("inf")


def workers_files(folder) -> None:
    """A worker's counter file as prometheus_client writes it (3 logins), and another
    process's first file at the moment it exists but is not yet sized."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    written = MmapedDict(str(folder / "counter_4101.db"))
    key = mmap_key(
        "authserver_logins_total", "authserver_logins_total", ("method", "outcome"),
        ("password", "success"), "Logins",
    )  # fmt: skip
    written.write_value(key, 3.0, 0)
    written.close()
    (folder / "counter_4102.db").touch()


def test_a_scrape_leaves_out_a_file_another_process_is_creating(tmp_path):
    import struct

    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from authserver.metrics import SettledFiles

    workers_files(tmp_path)
    with pytest.raises(struct.error):  # prometheus_client's own collector: the whole scrape
        MultiProcessCollector(CollectorRegistry(), path=str(tmp_path)).collect()
    [family] = SettledFiles(str(tmp_path)).collect()
    assert [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")] == [
        ({"method": "password", "outcome": "success"}, 3.0)
    ]
    with pytest.raises(ValueError):
        SettledFiles(str(tmp_path / "missing"))


def test_metrics_of_every_worker_answer_while_a_file_is_being_created(
    make_app, tmp_path, monkeypatch
):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    workers_files(folder)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    samples = scrape(make_app().test_client())  # a 500 before
    assert value(samples, "authserver_logins_total", method="password", outcome="success") == 3
