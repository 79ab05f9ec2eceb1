"""Online identity verification adapters: the hosted HMAC protocol's callback checks (bad
input is a 400 French page, never a 500); Onfido's API v3.6 against a local server answering
in its documented format (applicant and workflow run creation, run retrieval, the signed
webhook; timeouts and 5xx); the abandoned-check fallback to the counsellor queue."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select, update

from authserver.config import ConfigError, load_settings
from authserver.db import get_database
from authserver.establishments import service
from authserver.establishments.identity import (
    Applicant,
    HostedVerifier,
    IdentityUnavailable,
    InvalidCallback,
    VerificationResult,
)
from authserver.establishments.onfido import OnfidoVerifier
from authserver.models import CertificationRequest, User, utcnow
from tests.conftest import Actions
from tests.establishments import local_http
from tests.establishments.test_flow import (
    active_establishments,
    attach,
    certification_rows,
    choose_certification,
    employer,
    staff,
    unescape,
    user_row,
    wait_mail,
)
from tests.services import SMTPServer, free_port

SECRET = "hosted-shared-secret-0123456789"
INVALID_PAGE = "Le retour du service de vérification d'identité n'est pas valide ou a expiré."


def _mac(*parts: str) -> str:
    return hmac.new(SECRET.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def hosted_app(make_app) -> Flask:
    return make_app(
        AUTHSERVER_IDENTITY_PROVIDER="hosted",
        AUTHSERVER_IDENTITY_URL="https://verify.example.test",
        AUTHSERVER_IDENTITY_SECRET=SECRET,
    )


def _start_hosted(app: Flask, smtp: SMTPServer) -> tuple[Actions, str]:
    actions = employer(app, smtp, "martin.dupont")
    attach(actions, active_establishments()[0].siret)
    response = choose_certification(actions, "online")
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == (
        "https",
        "verify.example.test",
        "/verify",
    )
    query = parse_qs(target.query)
    reference = query["reference"][0]
    # The redirect is signed too.
    expected = _mac(reference, query["return_url"][0], query["ts"][0])
    assert query["sig"][0] == expected
    return actions, reference


def _callback(actions: Actions, **fields: str):
    return actions.client.get("/certification/callback?" + urlencode(fields))


def test_hosted_signed_callback_certifies(hosted_app: Flask, smtp: SMTPServer) -> None:
    actions, reference = _start_hosted(hosted_app, smtp)
    ts = str(int(time.time()))
    response = _callback(
        actions, reference=reference, outcome="approved", ts=ts, sig=_mac(reference, "approved", ts)
    )
    assert response.status_code == 302
    assert user_row(hosted_app, "martin.dupont").certified_at is not None


@pytest.mark.parametrize(
    "tamper",
    [
        {"ts": "²"},  # str.isdigit() is True, int() fails
        {"ts": "١٧٠٠٠٠٠٠٠٠"},  # Arabic-Indic digits
        {"ts": "-1"},
        {"ts": "9" * 40},
        {"sig": "é" * 64},  # non-ASCII: hmac.compare_digest would raise TypeError
        {"sig": "Z" * 64},
        {"sig": ""},
        {"reference": "réf"},
        {"reference": "x" * 65},
        {"outcome": "maybe"},
        {"sig": "0" * 64},  # well-formed, wrong
        {"ts": "1000"},  # well-formed, expired
    ],
)
def test_hosted_bad_callback_is_a_400_french_page(
    hosted_app: Flask, smtp: SMTPServer, tamper: dict[str, str]
) -> None:
    actions, reference = _start_hosted(hosted_app, smtp)
    ts = str(int(time.time()))
    fields = {
        "reference": reference,
        "outcome": "approved",
        "ts": ts,
        "sig": _mac(reference, "approved", ts),
        **tamper,
    }
    response = _callback(actions, **fields)
    assert response.status_code == 400
    html = unescape(response.get_data(as_text=True))
    assert INVALID_PAGE in html
    assert "Traceback" not in html
    assert user_row(hosted_app, "martin.dupont").certified_at is None
    assert [r.status for r in certification_rows(hosted_app, "martin.dupont")] == ["pending"]


@pytest.mark.parametrize(
    "args",
    [
        {"reference": "abc", "outcome": "approved", "ts": "²", "sig": "0" * 64},
        {"reference": "abc", "outcome": "approved", "ts": "1", "sig": "é"},
        {"reference": "abc", "outcome": "approved", "ts": "1", "sig": "\x00" * 64},
    ],
)
def test_hosted_read_callback_raises_invalid_callback_only(args: dict[str, str]) -> None:
    with pytest.raises(InvalidCallback):
        HostedVerifier("https://verify.example.test", SECRET).read_callback(args)


# --- Onfido (API v3.6) against a local server answering in its documented format -----------

API_TOKEN = "api_sandbox.test-token-0123456789"
WEBHOOK_TOKEN = "webhook-token-0123456789abcdef"
WORKFLOW_ID = "6a0ba2a4-2f6e-4e5c-9a3b-2b1f0f4d9c11"
APPLICANT_ID = "a8e3f7c2-1d44-4b0e-9f9a-7d3c2b1a0e55"
RUN_ID = "2f152409-d6c4-4711-8750-48517f99a8d6"


@dataclass
class OnfidoReply:
    status: int = 200
    body: Any = None
    delay: float = 0.0


@dataclass
class FakeOnfido:
    """``/v3.6/applicants``, ``/v3.6/workflow_runs`` and ``/v3.6/workflow_runs/{id}``.

    ``replies`` maps "METHOD /path" to a queue of replies (the last one repeats); without one,
    the documented success answer. Every request is recorded with its headers and JSON body.
    """

    replies: dict[str, list[OnfidoReply]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    run_status: str = "awaiting_input"
    stop: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v3.6"

    def play(self, key: str, *replies: OnfidoReply) -> None:
        self.replies[key] = list(replies)

    def calls(self, key: str) -> list[tuple[str, str, dict[str, str], Any]]:
        method, path = key.split(" ", 1)
        return [r for r in self.requests if r[0] == method and r[1] == path]

    def documented(self, method: str, path: str) -> OnfidoReply:
        link_url = f"https://eu.onfido.app/l/{RUN_ID[:8]}"
        if (method, path) == ("POST", "/v3.6/applicants"):
            return OnfidoReply(
                201,
                {
                    "id": APPLICANT_ID,
                    "created_at": "2026-11-30T10:00:00Z",
                    "first_name": "Martin",
                    "last_name": "Dupont",
                    "href": f"/v3.6/applicants/{APPLICANT_ID}",
                },
            )
        run = {
            "id": RUN_ID,
            "applicant_id": APPLICANT_ID,
            "workflow_id": WORKFLOW_ID,
            "workflow_version_id": 3,
            "status": self.run_status,
            "dashboard_url": f"https://dashboard.onfido.com/results/{RUN_ID}",
            "link": {"url": link_url, "language": "fr_FR"},
            "created_at": "2026-11-30T10:00:01Z",
            "updated_at": "2026-11-30T10:00:01Z",
        }
        if (method, path) == ("POST", "/v3.6/workflow_runs"):
            return OnfidoReply(201, run)
        if (method, path) == ("GET", f"/v3.6/workflow_runs/{RUN_ID}"):
            return OnfidoReply(200, run)
        return OnfidoReply(404, {"error": {"type": "resource_not_found", "message": "?"}})

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                body = json.loads(raw) if raw else None
                fake.requests.append((self.command, self.path, headers, body))
                queue = fake.replies.get(f"{self.command} {self.path}")
                if queue:
                    reply = queue.pop(0) if len(queue) > 1 else queue[0]
                else:
                    reply = fake.documented(self.command, self.path)
                if reply.delay and fake.stop.wait(reply.delay):
                    return
                payload = json.dumps(reply.body).encode() if reply.body is not None else b""
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = local_http.serve(Handler)

    def close(self) -> None:
        local_http.close(self.server, self.stop)


@pytest.fixture
def onfido(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOnfido]:
    local_http.without_proxies(monkeypatch)
    fake = FakeOnfido()
    fake.start()
    yield fake
    fake.close()


def verifier_for(fake: FakeOnfido, **options: Any) -> OnfidoVerifier:
    return OnfidoVerifier(
        api_token=API_TOKEN,
        webhook_token=WEBHOOK_TOKEN,
        workflow_id=WORKFLOW_ID,
        base_url=fake.url,
        **options,
    )


APPLICANT = Applicant(first_name="Martin", last_name="Dupont", user_id="0123abcd")


def start_check(verifier: OnfidoVerifier):
    return verifier.start(
        reference="ignored-by-onfido",
        applicant=APPLICANT,
        callback_url="http://localhost:5000/certification/callback",
        return_url="http://localhost:5000/certification/retour",
        dev_page_url="/dev/identity/x",
    )


def signed(event: dict[str, Any], token: str = WEBHOOK_TOKEN) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-SHA2-Signature": signature, "Content-Type": "application/json"}


def run_completed(status: str, run_id: str = RUN_ID) -> dict[str, Any]:
    """The documented ``workflow_run.completed`` webhook event."""
    return {
        "payload": {
            "resource_type": "workflow_run",
            "action": "workflow_run.completed",
            "object": {
                "id": run_id,
                "status": status,
                "completed_at_iso8601": "2026-11-30T10:05:39Z",
                "href": f"https://api.eu.onfido.com/v3.6/workflow_runs/{run_id}",
            },
        }
    }


def test_onfido_start_creates_an_applicant_and_a_workflow_run(onfido: FakeOnfido) -> None:
    started = start_check(verifier_for(onfido))
    assert started.redirect_url == f"https://eu.onfido.app/l/{RUN_ID[:8]}"
    assert started.provider_reference == RUN_ID
    (applicant,) = onfido.calls("POST /v3.6/applicants")
    (run,) = onfido.calls("POST /v3.6/workflow_runs")
    for _, _, headers, _ in (applicant, run):
        assert headers["authorization"] == f"Token token={API_TOKEN}"
        assert headers["content-type"] == "application/json"
    assert applicant[3] == {"first_name": "Martin", "last_name": "Dupont"}  # nothing else
    assert run[3] == {
        "workflow_id": WORKFLOW_ID,
        "applicant_id": APPLICANT_ID,
        "customer_user_id": "0123abcd",
        "link": {
            "completed_redirect_url": "http://localhost:5000/certification/retour",
            "expired_redirect_url": "http://localhost:5000/certification/retour",
            "language": "fr_FR",
        },
    }


@pytest.mark.parametrize(
    ("key", "reply", "detail"),
    [
        ("POST /v3.6/applicants", OnfidoReply(503, {"error": {}}), "HTTP 503"),
        ("POST /v3.6/applicants", OnfidoReply(401, {"error": {}}), "API token"),
        ("POST /v3.6/workflow_runs", OnfidoReply(500, None), "HTTP 500"),
        ("POST /v3.6/workflow_runs", OnfidoReply(422, {"error": {}}), "HTTP 422"),
        ("POST /v3.6/workflow_runs", OnfidoReply(201, {"id": RUN_ID}), "link.url"),
        ("POST /v3.6/applicants", OnfidoReply(201, ["not", "an", "object"]), "JSON object"),
    ],
)
def test_onfido_start_failures_are_identity_unavailable_without_retrying_a_post(
    onfido: FakeOnfido, key: str, reply: OnfidoReply, detail: str
) -> None:
    onfido.play(key, reply)
    with pytest.raises(IdentityUnavailable, match=re.escape(detail)):
        start_check(verifier_for(onfido))
    assert len(onfido.calls(key)) == 1  # a POST is never repeated (no second run)


def test_onfido_start_timeout_is_bounded(onfido: FakeOnfido) -> None:
    onfido.play("POST /v3.6/applicants", OnfidoReply(201, {"id": APPLICANT_ID}, delay=5))
    started = time.monotonic()
    with pytest.raises(IdentityUnavailable):
        start_check(verifier_for(onfido, timeout=0.3, total_timeout=1.0))
    assert time.monotonic() - started < 3.0  # the fake answers at 5 s, at best


def test_onfido_unreachable_is_identity_unavailable() -> None:
    verifier = OnfidoVerifier(
        api_token=API_TOKEN,
        webhook_token=WEBHOOK_TOKEN,
        workflow_id=WORKFLOW_ID,
        base_url=f"http://127.0.0.1:{free_port()}/v3.6",
        total_timeout=2.0,
    )
    with pytest.raises(IdentityUnavailable):
        start_check(verifier)


def test_onfido_fetch_result_retries_a_read_on_5xx_and_timeouts(onfido: FakeOnfido) -> None:
    key = f"GET /v3.6/workflow_runs/{RUN_ID}"
    onfido.run_status = "approved"
    onfido.play(
        key,
        OnfidoReply(503, {"error": {}}),
        OnfidoReply(200, {}, delay=2),  # times out
        onfido.documented("GET", f"/v3.6/workflow_runs/{RUN_ID}"),
    )
    verifier = verifier_for(onfido, timeout=0.3, total_timeout=3.0, backoff=0.05)
    assert verifier.fetch_result(RUN_ID) == VerificationResult(RUN_ID, "approved")
    assert len(onfido.calls(key)) == 3


def test_onfido_fetch_result_gives_up_within_its_budget(onfido: FakeOnfido) -> None:
    key = f"GET /v3.6/workflow_runs/{RUN_ID}"
    onfido.play(key, OnfidoReply(502, None))
    started = time.monotonic()
    with pytest.raises(IdentityUnavailable, match="HTTP 502"):
        verifier_for(onfido, total_timeout=1.0, backoff=0.05).fetch_result(RUN_ID)
    assert time.monotonic() - started < 3.0  # a 1 s budget, however many 502s
    assert len(onfido.calls(key)) == 3  # the first try and two retries


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("approved", "approved"),
        ("declined", "refused"),
        ("review", "review"),
        ("abandoned", "abandoned"),
        ("error", "error"),
        ("awaiting_input", None),
        ("processing", None),
    ],
)
def test_onfido_statuses(onfido: FakeOnfido, status: str, outcome: str | None) -> None:
    onfido.run_status = status
    expected = VerificationResult(RUN_ID, outcome) if outcome else None
    verifier = verifier_for(onfido)
    assert verifier.fetch_result(RUN_ID) == expected
    body, headers = signed(run_completed(status))
    assert verifier.read_webhook(headers, body) == expected


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body, {}),  # no signature
        lambda body, headers: (body, {"X-SHA2-Signature": "é" * 64}),  # non-ASCII
        lambda body, headers: (body, {"X-SHA2-Signature": "zz" * 32}),
        lambda body, headers: (body, {"X-SHA2-Signature": "0" * 64}),  # well-formed, wrong
        lambda body, headers: (body + b" ", headers),  # body changed after signing
        lambda body, headers: signed(run_completed("approved"), token="another-token-123456"),
    ],
)
def test_onfido_webhook_signature_is_checked(tamper) -> None:
    verifier = OnfidoVerifier(
        api_token=API_TOKEN, webhook_token=WEBHOOK_TOKEN, workflow_id=WORKFLOW_ID
    )
    body, headers = tamper(*signed(run_completed("approved")))
    with pytest.raises(InvalidCallback):
        verifier.read_webhook(headers, body)


def test_onfido_webhook_other_events_are_ignored_and_bad_ones_refused() -> None:
    verifier = OnfidoVerifier(
        api_token=API_TOKEN, webhook_token=WEBHOOK_TOKEN, workflow_id=WORKFLOW_ID
    )
    task = {
        "payload": {
            "resource_type": "workflow_task",
            "action": "workflow_task.completed",
            "object": {"id": "profile_123", "href": "https://api.eu.onfido.com/v3.6/x"},
        }
    }
    assert verifier.read_webhook(*reversed(signed(task))) is None
    for bad in (
        run_completed("frobnicated"),
        run_completed("approved", run_id="../../etc"),
        {"payload": "nope"},
        ["not", "an", "object"],
    ):
        with pytest.raises(InvalidCallback):
            verifier.read_webhook(*reversed(signed(bad)))
    body = b"{not json"
    headers = {"X-SHA2-Signature": hmac.new(WEBHOOK_TOKEN.encode(), body, "sha256").hexdigest()}
    with pytest.raises(InvalidCallback):
        verifier.read_webhook(headers, body)


# --- Onfido through the pages and the webhook endpoint -----------------------------------


@pytest.fixture
def onfido_app(make_app, onfido: FakeOnfido) -> Flask:
    return make_app(
        AUTHSERVER_IDENTITY_PROVIDER="onfido",
        AUTHSERVER_IDENTITY_URL=onfido.url,
        AUTHSERVER_IDENTITY_API_KEY=API_TOKEN,
        AUTHSERVER_IDENTITY_SECRET=WEBHOOK_TOKEN,
        AUTHSERVER_IDENTITY_WORKFLOW_ID=WORKFLOW_ID,
    )


def _start_onfido(app: Flask, smtp: SMTPServer) -> Actions:
    actions = employer(app, smtp, "martin.dupont")
    attach(actions, active_establishments()[0].siret)
    response = choose_certification(actions, "online")
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://eu.onfido.app/l/{RUN_ID[:8]}"
    rows = certification_rows(app, "martin.dupont")
    assert [(r.method, r.status, r.provider_reference) for r in rows] == [
        ("online", "pending", RUN_ID)
    ]
    return actions


def post_webhook(app: Flask, event: dict[str, Any], **override: str):
    """From the provider's servers: a fresh client, no cookie, no CSRF token."""
    body, headers = signed(event)
    headers.update(override)
    return app.test_client().post("/certification/webhook", data=body, headers=headers)


def test_onfido_webhook_certifies_without_a_user_session(
    onfido_app: Flask, smtp: SMTPServer, onfido: FakeOnfido
) -> None:
    actions = _start_onfido(onfido_app, smtp)
    (run,) = onfido.calls("POST /v3.6/workflow_runs")
    assert run[3]["link"]["completed_redirect_url"].endswith("/certification/retour")

    forged = post_webhook(onfido_app, run_completed("approved"), **{"X-SHA2-Signature": "0" * 64})
    assert forged.status_code == 401
    assert forged.get_json()["error"] == "invalid_signature"
    assert user_row(onfido_app, "martin.dupont").certified_at is None

    answer = post_webhook(onfido_app, run_completed("approved"))
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "applied", "outcome": "approved"}
    assert user_row(onfido_app, "martin.dupont").certified_at is not None
    wait_mail(smtp, "martin.dupont@entreprise.fr", "certifié")
    # Delivered twice (Onfido retries): nothing more happens.
    again = post_webhook(onfido_app, run_completed("declined"))
    assert again.get_json() == {"status": "ignored"}
    assert [r.status for r in certification_rows(onfido_app, "martin.dupont")] == ["certified"]
    # Back from Onfido, the user lands on the certified espace.
    back = actions.client.get("/certification/retour")
    assert back.status_code == 302 and back.headers["Location"].endswith("/espace")
    # Unknown runs are acknowledged and ignored.
    other = post_webhook(onfido_app, run_completed("approved", run_id=APPLICANT_ID))
    assert other.get_json() == {"status": "ignored"}


def test_onfido_declined_webhook_falls_back_to_the_counselor_queue(
    onfido_app: Flask, smtp: SMTPServer
) -> None:
    _start_onfido(onfido_app, smtp)
    answer = post_webhook(onfido_app, run_completed("declined"))
    assert answer.get_json() == {"status": "applied", "outcome": "refused"}
    rows = certification_rows(onfido_app, "martin.dupont")
    assert [(r.method, r.status) for r in rows] == [
        ("online", "abandoned"),
        ("counselor", "pending"),
    ]
    assert rows[0].reason == "Vérification en ligne : refusée par le prestataire"
    assert user_row(onfido_app, "martin.dupont").certified_at is None


def test_onfido_user_back_before_the_webhook(
    onfido_app: Flask, smtp: SMTPServer, onfido: FakeOnfido
) -> None:
    actions = _start_onfido(onfido_app, smtp)
    # Still running at Onfido: the « en cours » page.
    waiting = actions.client.get("/certification/retour")
    assert waiting.status_code == 200
    assert "en cours" in unescape(waiting.get_data(as_text=True))
    # Onfido down (5xx): the same page, never an error.
    onfido.play(f"GET /v3.6/workflow_runs/{RUN_ID}", OnfidoReply(503, None))
    assert actions.client.get("/certification/retour").status_code == 200
    assert user_row(onfido_app, "martin.dupont").certified_at is None
    # Approved at Onfido, webhook not arrived yet: the server asks and applies it.
    onfido.replies.clear()
    onfido.run_status = "approved"
    back = actions.client.get("/certification/retour")
    assert back.status_code == 302 and back.headers["Location"].endswith("/espace")
    assert user_row(onfido_app, "martin.dupont").certified_at is not None
    # The late webhook changes nothing.
    assert post_webhook(onfido_app, run_completed("approved")).get_json() == {"status": "ignored"}


def test_onfido_down_when_starting_shows_a_french_page(
    onfido_app: Flask, smtp: SMTPServer, onfido: FakeOnfido
) -> None:
    onfido.play("POST /v3.6/workflow_runs", OnfidoReply(503, None))
    actions = employer(onfido_app, smtp, "martin.dupont")
    attach(actions, active_establishments()[0].siret)
    response = choose_certification(actions, "online")
    assert response.status_code == 503
    html = unescape(response.get_data(as_text=True))
    assert "momentanément indisponible" in html and "par un conseiller" in html
    assert certification_rows(onfido_app, "martin.dupont") == []


def test_webhook_endpoint_refuses_providers_without_webhooks(app: Flask) -> None:
    response = post_webhook(app, run_completed("approved"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_signature"


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("AUTHSERVER_IDENTITY_API_KEY", "AUTHSERVER_IDENTITY_API_KEY"),
        ("AUTHSERVER_IDENTITY_SECRET", "AUTHSERVER_IDENTITY_SECRET"),
        ("AUTHSERVER_IDENTITY_WORKFLOW_ID", "AUTHSERVER_IDENTITY_WORKFLOW_ID"),
    ],
)
def test_onfido_configuration_names_the_missing_variable(
    tmp_path, missing: str, variable: str
) -> None:
    env = {
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "AUTHSERVER_IDENTITY_PROVIDER": "onfido",
        "AUTHSERVER_IDENTITY_API_KEY": API_TOKEN,
        "AUTHSERVER_IDENTITY_SECRET": WEBHOOK_TOKEN,
        "AUTHSERVER_IDENTITY_WORKFLOW_ID": WORKFLOW_ID,
    }
    assert load_settings(env).identity_provider == "onfido"
    del env[missing]
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable
    env[missing] = "not-a-uuid" if missing.endswith("WORKFLOW_ID") else "short"
    if missing != "AUTHSERVER_IDENTITY_API_KEY":
        with pytest.raises(ConfigError):
            load_settings(env)
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "AUTHSERVER_IDENTITY_PROVIDER": "ubble"})
    assert caught.value.variable == "AUTHSERVER_IDENTITY_PROVIDER"


# --- Abandoned online checks fall back to the counsellor queue -------------------------------


def _age_online_check(app: Flask, username: str, minutes: int) -> None:
    with get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username == username))
        session.execute(
            update(CertificationRequest)
            .where(CertificationRequest.user_id == user_id, CertificationRequest.method == "online")
            .values(created_at=utcnow() - timedelta(minutes=minutes))
        )


def test_abandoned_online_check_falls_back_when_the_user_opens_the_espace(
    app: Flask, smtp: SMTPServer
) -> None:
    actions = employer(app, smtp, "martin.dupont")
    attach(actions, active_establishments()[0].siret)
    assert choose_certification(actions, "online").status_code == 302  # never comes back
    _age_online_check(app, "martin.dupont", minutes=10)
    actions.client.get("/espace")
    assert [r.status for r in certification_rows(app, "martin.dupont")] == ["pending"]

    _age_online_check(app, "martin.dupont", minutes=31)
    assert actions.client.get("/espace").status_code == 200
    rows = certification_rows(app, "martin.dupont")
    assert [(r.method, r.status) for r in rows] == [
        ("online", "abandoned"),
        ("counselor", "pending"),
    ]
    assert "pas de retour du prestataire" in rows[0].reason
    # Only once.
    actions.client.get("/espace")
    assert len(certification_rows(app, "martin.dupont")) == 2


def test_abandoned_online_checks_join_the_queue_when_a_counselor_opens_it(
    app: Flask, smtp: SMTPServer
) -> None:
    actions = employer(app, smtp, "martin.dupont")
    attach(actions, active_establishments()[0].siret)
    choose_certification(actions, "online")
    _age_online_check(app, "martin.dupont", minutes=45)
    counselor = staff(app, smtp, "camille.conseil", "counselor")
    queue = unescape(counselor.client.get("/counselor").get_data(as_text=True))
    pending_part = queue.split("Demandes traitées")[0]
    assert "martin.dupont" in pending_part
    with app.app_context():
        assert service.expire_stale_online_checks() == 0  # already done


def test_onfido_late_approval_of_a_check_given_up_still_certifies(
    onfido_app: Flask, smtp: SMTPServer
) -> None:
    actions = _start_onfido(onfido_app, smtp)
    _age_online_check(onfido_app, "martin.dupont", minutes=40)
    actions.client.get("/espace")  # given up: to the counsellor queue
    rows = certification_rows(onfido_app, "martin.dupont")
    assert [(r.method, r.status) for r in rows] == [
        ("online", "abandoned"),
        ("counselor", "pending"),
    ]
    answer = post_webhook(onfido_app, run_completed("approved"))
    assert answer.get_json() == {"status": "applied", "outcome": "approved"}
    assert user_row(onfido_app, "martin.dupont").certified_at is not None
    rows = certification_rows(onfido_app, "martin.dupont")
    assert [(r.method, r.status) for r in rows] == [
        ("online", "certified"),
        ("counselor", "abandoned"),
    ]
    # A late refusal of a check given up changes nothing.
    assert post_webhook(onfido_app, run_completed("declined")).get_json() == {"status": "ignored"}
