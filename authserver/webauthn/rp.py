"""The relying party's identity and the algorithms it accepts."""

from __future__ import annotations

from dataclasses import dataclass

from webauthn.helpers.structs import COSEAlgorithmIdentifier

# EdDSA, ES256, RS256, in order of preference.
ALGORITHMS = (
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
)

CHALLENGE_BYTES = 32
CEREMONY_TIMEOUT_MS = 5 * 60 * 1000
CHALLENGE_TTL = 5 * 60


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origins: tuple[str, ...]
