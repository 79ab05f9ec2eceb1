"""Online identity verification behind an adapter: redirect out, signed callback back.

``EmbeddedVerifier`` is the development provider (a page of ours where the tester
approves or refuses); ``HostedVerifier`` talks to a real hosted provider that
shares an HMAC secret with us: the redirect and the callback are both signed,
carry a timestamp, and a callback older than an hour is refused.
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

OUTCOMES = ("approved", "refused", "abandoned")
CALLBACK_MAX_AGE = 3600


# What a well-formed hosted callback carries: our reference (``secrets.token_urlsafe``), a
# Unix time in ASCII digits and a lowercase hex HMAC-SHA256. ``str.isdigit`` is not enough
# (it accepts « ² » and other digits ``int`` refuses), and ``hmac.compare_digest`` raises on
# a non-ASCII string: both are checked with these patterns before anything else.
_REFERENCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class InvalidCallback(Exception):
    """The callback is forged, expired or malformed."""


@dataclass(frozen=True)
class VerificationResult:
    reference: str
    outcome: str


class IdentityVerifier(Protocol):
    def start_url(self, reference: str, callback_url: str, dev_page_url: str) -> str: ...

    def read_callback(self, args: Mapping[str, str]) -> VerificationResult: ...


class EmbeddedVerifier:
    """Development provider: our own page decides, the result comes back signed."""

    def __init__(self, secret_key: str) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="authserver.identity-callback")

    def start_url(self, reference: str, callback_url: str, dev_page_url: str) -> str:
        return dev_page_url

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
        if not isinstance(data, dict) or data.get("outcome") not in OUTCOMES:
            raise InvalidCallback("malformed result")
        return VerificationResult(str(data.get("ref", "")), str(data["outcome"]))


def _mac(secret: str, *parts: str) -> str:
    return hmac.new(secret.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


class HostedVerifier:
    """A hosted provider: ``GET {base}/verify?reference&return_url&ts&sig`` and back
    ``{return_url}?reference&outcome&ts&sig`` with ``sig = HMAC-SHA256(secret, fields)``."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def start_url(self, reference: str, callback_url: str, dev_page_url: str) -> str:
        ts = str(int(time.time()))
        sig = _mac(self.secret, reference, callback_url, ts)
        query = urlencode(
            {"reference": reference, "return_url": callback_url, "ts": ts, "sig": sig}
        )
        return f"{self.base_url}/verify?{query}"

    def read_callback(self, args: Mapping[str, str]) -> VerificationResult:
        reference = args.get("reference", "")
        outcome = args.get("outcome", "")
        ts = args.get("ts", "")
        sig = args.get("sig", "")
        if (
            outcome not in OUTCOMES
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
    return EmbeddedVerifier(settings.secret_key)
