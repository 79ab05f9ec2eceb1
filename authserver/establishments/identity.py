"""Online identity verification behind an adapter: send the user out, get the result back.

Three adapters, chosen by AUTHSERVER_IDENTITY_PROVIDER:

- ``EmbeddedVerifier`` (``embedded``, the default): the development provider, a page of
  ours where the tester approves or refuses; the result comes back signed in the browser.
- ``HostedVerifier`` (``hosted``): a provider speaking our own small HMAC protocol (the
  redirect and the browser callback are both signed, carry a timestamp, and a callback older
  than an hour is refused). Kept for compatibility; no public provider speaks it.
- ``OnfidoVerifier`` (``onfido``, ``authserver/establishments/onfido.py``): Onfido / Entrust
  Identity Verification, API v3.6 (Onfido Studio workflow runs, hosted link, signed webhook).

Every adapter offers the same four steps; a step an adapter has no use for says so:
``start`` (where to send the user, and the reference that binds the answer to our
request), ``read_callback`` (a signed result carried by the user's browser),
``read_webhook`` (a signed server-to-server notification) and ``fetch_result`` (asking the
provider). Outcomes are ``approved`` or, for the counsellor queue, ``refused``,
``abandoned``, ``review`` (the provider wants a human to look) and ``error``.

No Flask here: the views turn results into pages and JSON answers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from authserver.config import Settings

OUTCOMES = ("approved", "refused", "abandoned", "review", "error")
# What the development page and the hosted protocol can answer.
BROWSER_OUTCOMES = ("approved", "refused", "abandoned")
CALLBACK_MAX_AGE = 3600
# How each non-approved outcome reads in the request's reason, for the counsellor.
OUTCOME_LABELS = {
    "refused": "refusée par le prestataire",
    "abandoned": "abandonnée",
    "review": "à vérifier par un conseiller (selon le prestataire)",
    "error": "en erreur chez le prestataire",
}

# What a well-formed hosted callback carries: our reference (``secrets.token_urlsafe``), a
# Unix time in ASCII digits and a lowercase hex HMAC-SHA256. ``str.isdigit`` is not enough
# (it accepts « ² » and other digits ``int`` refuses), and ``hmac.compare_digest`` raises on
# a non-ASCII string: both are checked with these patterns before anything else.
_REFERENCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class InvalidCallback(Exception):
    """The callback or notification is forged, expired or malformed (or not this adapter's)."""


class IdentityUnavailable(Exception):
    """The provider could not be reached or answered badly. ``str(exc)`` is for the logs."""

    user_message = (
        "Le service de certification en ligne est momentanément indisponible. Veuillez "
        "réessayer dans quelques minutes, ou choisir la certification par un conseiller."
    )


@dataclass(frozen=True)
class VerificationResult:
    reference: str
    outcome: str


@dataclass(frozen=True)
class Applicant:
    """What a provider is told about the person: the names on their identity document."""

    first_name: str
    last_name: str
    user_id: str  # our public id, never the identifiant


@dataclass(frozen=True)
class StartedCheck:
    redirect_url: str
    # Stored in certification_requests.provider_reference: the provider's answer names it.
    provider_reference: str


class IdentityVerifier(Protocol):
    def start(
        self,
        *,
        reference: str,
        applicant: Applicant,
        callback_url: str,
        return_url: str,
        dev_page_url: str,
    ) -> StartedCheck: ...

    def read_callback(self, args: Mapping[str, str]) -> VerificationResult: ...

    def read_webhook(self, headers: Mapping[str, str], body: bytes) -> VerificationResult | None:
        """The result a signed notification carries, or None for an event of no interest."""
        ...

    def fetch_result(self, provider_reference: str) -> VerificationResult | None:
        """The result as the provider has it now (None: not finished, or not supported)."""
        ...


class _BrowserCallbackOnly:
    """Adapters whose result comes back through the browser only."""

    def read_webhook(self, headers: Mapping[str, str], body: bytes) -> VerificationResult | None:
        raise InvalidCallback("this provider sends no server-to-server notification")

    def fetch_result(self, provider_reference: str) -> VerificationResult | None:
        return None


class EmbeddedVerifier(_BrowserCallbackOnly):
    """Development provider: our own page decides, the result comes back signed."""

    def __init__(self, secret_key: str) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="authserver.identity-callback")

    def start(
        self,
        *,
        reference: str,
        applicant: Applicant,
        callback_url: str,
        return_url: str,
        dev_page_url: str,
    ) -> StartedCheck:
        return StartedCheck(dev_page_url, reference)

    def sign_result(self, reference: str, outcome: str) -> str:
        return self.serializer.dumps({"ref": reference, "outcome": outcome})

    def read_callback(self, args: Mapping[str, str]) -> VerificationResult:
        token = args.get("result", "")
        if not token or len(token) > 500:
            raise InvalidCallback("missing result")
        try:
            data = self.serializer.loads(token, max_age=CALLBACK_MAX_AGE)
        except (BadSignature, SignatureExpired):
            raise InvalidCallback("bad or expired signature") from None
        if not isinstance(data, dict) or data.get("outcome") not in BROWSER_OUTCOMES:
            raise InvalidCallback("malformed result")
        return VerificationResult(str(data.get("ref", "")), str(data["outcome"]))


def _mac(secret: str, *parts: str) -> str:
    return hmac.new(secret.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


class HostedVerifier(_BrowserCallbackOnly):
    """A hosted provider: ``GET {base}/verify?reference&return_url&ts&sig`` and back
    ``{return_url}?reference&outcome&ts&sig`` with ``sig = HMAC-SHA256(secret, fields)``."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def start(
        self,
        *,
        reference: str,
        applicant: Applicant,
        callback_url: str,
        return_url: str,
        dev_page_url: str,
    ) -> StartedCheck:
        ts = str(int(time.time()))
        sig = _mac(self.secret, reference, callback_url, ts)
        query = urlencode(
            {"reference": reference, "return_url": callback_url, "ts": ts, "sig": sig}
        )
        return StartedCheck(f"{self.base_url}/verify?{query}", reference)

    def read_callback(self, args: Mapping[str, str]) -> VerificationResult:
        reference = args.get("reference", "")
        outcome = args.get("outcome", "")
        ts = args.get("ts", "")
        sig = args.get("sig", "")
        if (
            outcome not in BROWSER_OUTCOMES
            or not _REFERENCE.fullmatch(reference)
            or not _TIMESTAMP.fullmatch(ts)
        ):
            raise InvalidCallback("malformed callback")
        if not _SIGNATURE.fullmatch(sig):
            raise InvalidCallback("malformed signature")
        if abs(time.time() - int(ts)) > CALLBACK_MAX_AGE:
            raise InvalidCallback("expired callback")
        if not hmac.compare_digest(sig, _mac(self.secret, reference, outcome, ts)):
            raise InvalidCallback("bad signature")
        return VerificationResult(reference, outcome)


def make_verifier(settings: Settings) -> IdentityVerifier:
    if settings.identity_provider == "hosted":
        assert settings.identity_url and settings.identity_secret
        return HostedVerifier(settings.identity_url, settings.identity_secret)
    if settings.identity_provider == "onfido":
        from authserver.establishments.onfido import ONFIDO_URL, OnfidoVerifier

        assert settings.identity_api_key and settings.identity_secret
        assert settings.identity_workflow_id
        return OnfidoVerifier(
            api_token=settings.identity_api_key,
            webhook_token=settings.identity_secret,
            workflow_id=settings.identity_workflow_id,
            base_url=settings.identity_url or ONFIDO_URL,
        )
    return EmbeddedVerifier(settings.secret_key)
