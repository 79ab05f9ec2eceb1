"""Onfido (now Entrust Identity Verification), API v3.6: the real online identity check.

Documented API (https://documentation.onfido.com/api/latest/), as used here:

- every call: ``Authorization: Token token=<API token>``, JSON bodies; the base URL names
  the region and the version, ``https://api.eu.onfido.com/v3.6`` by default (``.us.``,
  ``.ca.`` for the other regions);
- ``POST /applicants`` ``{"first_name", "last_name"}`` → ``201 {"id": <uuid>, …}``;
- ``POST /workflow_runs`` ``{"workflow_id", "applicant_id", "customer_user_id",
  "link": {"completed_redirect_url", "expired_redirect_url", "language"}}`` →
  ``201 {"id": <uuid>, "status": "awaiting_input", "link": {"url": <hosted page>}, …}``:
  the user is sent to ``link.url`` (Onfido Studio's hosted flow: document and face, on the
  computer's camera or by QR code on a phone, as in the seed), then back to
  ``completed_redirect_url``;
- ``GET /workflow_runs/{id}`` → the run, whose ``status`` is one of ``processing``,
  ``awaiting_input``, ``awaiting_client_input``, ``approved``, ``declined``, ``review``,
  ``abandoned``, ``error``;
- the webhook (registered in the dashboard or by ``POST /webhooks`` for the event
  ``workflow_run.completed``) POSTs ``{"payload": {"resource_type": "workflow_run",
  "action": "workflow_run.completed", "object": {"id", "status", "completed_at_iso8601",
  "href"}}}`` with ``X-SHA2-Signature``: the lowercase hex HMAC-SHA256 of the raw body,
  keyed with the webhook's token, compared in constant time.

The result is bound to our request by the workflow run id (``provider_reference``): the
webhook needs no user session. Onfido may deliver a webhook more than once; applying a
result is idempotent (a decided request is left alone).

Time bounds: each call waits at most ``timeout`` per socket operation and ``total_timeout``
in all; reads (``GET``) are retried on a connection failure, a timeout, a 429 or a 5xx;
creations (``POST``) are not (a retry could create a second run), so a failure there is
``IdentityUnavailable`` at once and the user may try again or choose a counsellor.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from authserver.establishments.identity import (
    Applicant,
    IdentityUnavailable,
    InvalidCallback,
    StartedCheck,
    VerificationResult,
)

log = logging.getLogger(__name__)

ONFIDO_URL = "https://api.eu.onfido.com/v3.6"
SIGNATURE_HEADER = "X-SHA2-Signature"
USER_AGENT = "authserver/0.1 (certification d'identite en ligne)"
MAX_BODY_BYTES = 1024 * 1024
MAX_WEBHOOK_BYTES = 64 * 1024

# Onfido's workflow run status → our outcome (None: not finished yet).
STATUS_OUTCOMES: dict[str, str | None] = {
    "approved": "approved",
    "declined": "refused",
    "review": "review",
    "abandoned": "abandoned",
    "error": "error",
    "processing": None,
    "awaiting_input": None,
    "awaiting_client_input": None,
}

_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_RUN_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))


class _Transient(Exception):
    """No answer worth reading: connection refused or cut, timeout."""


class OnfidoVerifier:
    """Onfido Studio: one applicant and one workflow run per online check."""

    def __init__(
        self,
        *,
        api_token: str,
        webhook_token: str,
        workflow_id: str,
        base_url: str = ONFIDO_URL,
        timeout: float = 5.0,
        total_timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.25,
        language: str = "fr_FR",
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"onfido: an http(s) base URL is expected, got {base_url!r}")
        if not api_token or not webhook_token or not workflow_id:
            raise ValueError("onfido: the API token, webhook token and workflow id are required")
        self.base_url = base_url.rstrip("/")
        self._api_token = api_token
        self._webhook_token = webhook_token.encode()
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.retries = retries
        self.backoff = backoff
        self.language = language
        self._opener = urllib.request.build_opener()

    # --- the four steps --------------------------------------------------------------------

    def start(
        self,
        *,
        reference: str,
        applicant: Applicant,
        callback_url: str,
        return_url: str,
        dev_page_url: str,
    ) -> StartedCheck:
        created = self._call(
            "POST",
            "/applicants",
            {"first_name": applicant.first_name, "last_name": applicant.last_name},
            expect=201,
        )
        applicant_id = _string(created, "id")
        run = self._call(
            "POST",
            "/workflow_runs",
            {
                "workflow_id": self.workflow_id,
                "applicant_id": applicant_id,
                "customer_user_id": applicant.user_id,
                "link": {
                    "completed_redirect_url": return_url,
                    "expired_redirect_url": return_url,
                    "language": self.language,
                },
            },
            expect=201,
        )
        run_id = _string(run, "id")
        link = run.get("link")
        url = link.get("url") if isinstance(link, dict) else None
        if not _RUN_ID.fullmatch(run_id) or not isinstance(url, str) or not _is_http_url(url):
            raise self._unavailable("the workflow run has no id or no link.url")
        return StartedCheck(url, run_id)

    def read_callback(self, args: Mapping[str, str]) -> VerificationResult:
        raise InvalidCallback("Onfido's result comes by webhook, not through the browser")

    def read_webhook(self, headers: Mapping[str, str], body: bytes) -> VerificationResult | None:
        signature = headers.get(SIGNATURE_HEADER) or ""
        if not _HEX_SIGNATURE.fullmatch(signature):
            raise InvalidCallback("missing or malformed X-SHA2-Signature")
        if len(body) > MAX_WEBHOOK_BYTES:
            raise InvalidCallback("webhook body too large")
        expected = hmac.new(self._webhook_token, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.lower(), expected):
            raise InvalidCallback("bad webhook signature")
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidCallback("the webhook body is not JSON") from None
        payload = event.get("payload") if isinstance(event, dict) else None
        if not isinstance(payload, dict) or not isinstance(payload.get("object"), dict):
            raise InvalidCallback("no payload.object in the webhook")
        if payload.get("resource_type") != "workflow_run" or payload.get("action") != (
            "workflow_run.completed"
        ):
            return None  # another event (a task, a check...): of no interest here
        run = payload["object"]
        run_id, status = run.get("id"), run.get("status")
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise InvalidCallback("payload.object.id is not a workflow run id")
        if not isinstance(status, str) or status not in STATUS_OUTCOMES:
            raise InvalidCallback(f"unknown workflow run status {status!r}")
        outcome = STATUS_OUTCOMES[status]
        return VerificationResult(run_id, outcome) if outcome is not None else None

    def fetch_result(self, provider_reference: str) -> VerificationResult | None:
        """Ask Onfido for the run (the user is back before the webhook, or it was lost)."""
        if not _RUN_ID.fullmatch(provider_reference):
            return None
        run = self._call("GET", f"/workflow_runs/{provider_reference}", None, expect=200)
        status = run.get("status")
        outcome = STATUS_OUTCOMES.get(status) if isinstance(status, str) else None
        return VerificationResult(provider_reference, outcome) if outcome is not None else None

    # --- HTTP -------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, expect: int
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self.total_timeout
        attempts = 1 + (self.retries if method == "GET" else 0)
        failure = ""
        for attempt in range(attempts):
            if attempt:
                pause = self.backoff * (2 ** (attempt - 1))
                if time.monotonic() + pause >= deadline:
                    break
                log.info("onfido: %s %s failed (%s), retrying", method, path, failure)
                time.sleep(pause)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status, raw = self._attempt(method, path, body, min(self.timeout, remaining))
            except _Transient as exc:
                failure = str(exc)
                continue
            if status in _RETRY_STATUSES:
                failure = f"HTTP {status}"
                continue
            if status in (401, 403):
                raise self._unavailable(
                    f"{method} {path}: HTTP {status}, Onfido refused the API token "
                    "(check AUTHSERVER_IDENTITY_API_KEY and its region)"
                )
            if status != expect:
                raise self._unavailable(f"{method} {path}: unexpected HTTP {status}")
            try:
                document = json.loads(raw)
            except ValueError:
                raise self._unavailable(f"{method} {path}: the answer is not JSON") from None
            if not isinstance(document, dict):
                raise self._unavailable(f"{method} {path}: the answer is not a JSON object")
            return document
        raise self._unavailable(f"{method} {path}: {failure or 'time budget spent'}")

    def _attempt(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float
    ) -> tuple[int, bytes]:
        headers = {
            "Accept": "application/json",
            "Authorization": f"Token token={self._api_token}",
            "User-Agent": USER_AGENT,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            response = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _read(exc)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        with response:
            return response.status, _read(response)

    def _unavailable(self, detail: str) -> IdentityUnavailable:
        log.warning("onfido: %s", detail)
        return IdentityUnavailable(f"onfido: {detail}")


def _read(response: Any) -> bytes:
    try:
        raw = response.read(MAX_BODY_BYTES + 1)
    except (OSError, ValueError, AttributeError, http.client.HTTPException) as exc:
        raise _Transient(f"reading the answer failed: {type(exc).__name__}") from None
    if len(raw) > MAX_BODY_BYTES:
        raise _Transient("the answer is too large")
    return raw


def _string(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise IdentityUnavailable(f"onfido: the answer has no {key!r}")
    return value


def _is_http_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
