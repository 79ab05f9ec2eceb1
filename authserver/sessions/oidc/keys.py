"""ES256 signing keys kept in the database; storage and crypto only (no Flask).

Every unretired key is published on the JWKS; the newest one whose ``signs_from`` has come
signs. Services cache the JWKS (we say ``max-age=JWKS_MAX_AGE``), so a key that signed at
once would be unknown to them for up to that long: ``authserver oidc rotate-key`` publishes
the new key as the *next* one and it starts signing ``PUBLISH_AHEAD`` later (twice the cache
lifetime: one cache period plus margin for clocks and intermediate caches). No second
command to remember, and every instance switches at the same instant since they all read
the same row. Tokens signed by the previous key still verify until it is retired
(``authserver oidc retire-key KID``), which is refused while it is still the signing key.
The very first key signs at once (nothing can have cached a JWKS yet).

Private halves are sealed with AES-GCM under a key derived from AUTHSERVER_SECRET_KEY.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from authserver.models import OIDCSigningKey, utcnow

log = logging.getLogger(__name__)

ALG = "ES256"
_AAD = b"authserver oidc signing key v1"
JWKS_MAX_AGE = 300  # seconds: Cache-Control of the JWKS and discovery documents
PUBLISH_AHEAD = timedelta(seconds=2 * JWKS_MAX_AGE)


class KeyError_(Exception):
    """A key operation the operator asked for cannot be done; the message says why."""


def _sealing_key(secret_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_AAD).derive(
        secret_key.encode()
    )


# Sealed since issue 15: version byte, the sealing key's id, nonce, ciphertext. The id says
# which of the current and fallback secrets to use (after ``authserver secret rotate``).
_VERSION = b"\x01"


def sealing_key_id(secret_key: str) -> bytes:
    """8 bytes naming a secret without revealing it (a hash of its derived sealing key)."""
    return hashlib.sha256(b"authserver.oidc-seal-id" + _sealing_key(secret_key)).digest()[:8]


def seal(secret_key: str, data: bytes) -> bytes:
    nonce = os.urandom(12)
    body = AESGCM(_sealing_key(secret_key)).encrypt(nonce, data, _AAD)
    return _VERSION + sealing_key_id(secret_key) + nonce + body


def _open(secret_key: str, nonce_and_body: bytes) -> bytes:
    return AESGCM(_sealing_key(secret_key)).decrypt(nonce_and_body[:12], nonce_and_body[12:], _AAD)


def unseal_with(secret_keys: Sequence[str], sealed: bytes) -> tuple[bytes, str]:
    """The private key and the secret that opened it: the one its id names, or, for a key
    sealed before ids existed (nonce first), each in turn. InvalidTag if none opens it."""
    if sealed[:1] == _VERSION:
        named = sealed[1:9]
        for secret in secret_keys:
            if sealing_key_id(secret) == named:
                try:
                    return _open(secret, sealed[9:]), secret
                except InvalidTag:
                    break
    for secret in secret_keys:  # sealed without an id (or a nonce starting with 0x01)
        try:
            return _open(secret, sealed), secret
        except InvalidTag:
            continue
    raise InvalidTag()


def create_key(
    session: Session,
    secret_key: str,
    now: datetime | None = None,
    signs_from: datetime | None = None,
) -> OIDCSigningKey:
    """A new key pair, published now, signing from ``signs_from`` (now by default).
    The caller commits."""
    now = now or utcnow()
    key = ECKey.generate_key("P-256", private=True)
    kid = f"{now:%Y%m%d}-{key.thumbprint()[:16]}"
    public = {**key.as_dict(private=False), "kid": kid, "alg": ALG, "use": "sig"}
    private = json.dumps({**key.as_dict(private=True), "kid": kid}).encode()
    row = OIDCSigningKey(
        kid=kid,
        alg=ALG,
        public_jwk=public,
        private_jwk_sealed=seal(secret_key, private),
        created_at=now,
        signs_from=signs_from or now,
    )
    session.add(row)
    session.flush()
    return row


def live_keys(session: Session) -> list[OIDCSigningKey]:
    """Every published key, the one that signs last (the next one, if any, first)."""
    return list(
        session.scalars(
            select(OIDCSigningKey)
            .where(OIDCSigningKey.retired_at.is_(None))
            .order_by(OIDCSigningKey.signs_from.desc(), OIDCSigningKey.kid.desc())
        )
    )


def current_key(session: Session, now: datetime | None = None) -> OIDCSigningKey | None:
    """The key that signs now (not checking that it can be unsealed)."""
    now = now or utcnow()
    return next((row for row in live_keys(session) if row.signs_from <= now), None)


def signing_key(
    session: Session,
    secret_key: str,
    now: datetime | None = None,
    *,
    fallbacks: Sequence[str] = (),
) -> tuple[str, ECKey]:
    """The key that signs now: the newest live one already due that we can unseal (one is
    made, signing at once, if none). ``fallbacks``: earlier secrets (after ``authserver
    secret rotate``); a key still sealed under one is sealed again under ``secret_key`` (the
    caller's commit keeps it), so the fallback can be retired later."""
    now = now or utcnow()
    for row in live_keys(session):
        if row.signs_from > now:
            continue  # published ahead, not signing yet
        try:
            raw, opened_by = unseal_with((secret_key, *fallbacks), row.private_jwk_sealed)
        except InvalidTag:
            log.error("OIDC key %s cannot be unsealed (AUTHSERVER_SECRET_KEY changed?)", row.kid)
            continue
        if opened_by != secret_key:
            row.private_jwk_sealed = seal(secret_key, raw)
            log.info("OIDC key %s sealed again under the current secret key", row.kid)
        return row.kid, ECKey.import_key(json.loads(raw))
    row = create_key(session, secret_key, now)
    log.warning("no usable OIDC signing key: created %s", row.kid)
    return signing_key(session, secret_key, now)


def public_jwks(session: Session) -> dict[str, Any]:
    return {"keys": [row.public_jwk for row in live_keys(session)]}


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def rotate(
    session: Session, secret_key: str, now: datetime | None = None, *, immediately: bool = False
) -> tuple[OIDCSigningKey, list[str]]:
    """Publish a new key that signs from ``now + PUBLISH_AHEAD``; return it and the kids that
    still verify beside it. It signs at once when there is no key yet, or ``immediately``
    (a compromised key: services that cached the JWKS refetch it on the unknown kid)."""
    now = now or utcnow()
    live = live_keys(session)
    pending = [row for row in live if row.signs_from > now]
    if pending and not immediately:
        raise KeyError_(
            f"la clé « {pending[0].kid} » attend déjà de signer "
            f"(à partir du {_when(pending[0].signs_from)})"
        )
    for row in pending:  # superseded before it ever signed
        row.retired_at = now
    signs_from = now if immediately or not live else now + PUBLISH_AHEAD
    still = [row.kid for row in live if row not in pending]
    created = create_key(session, secret_key, now, signs_from)
    from authserver.alerts.events import after_commit

    after_commit(
        session,
        "oidc_key_rotated",
        kid=created.kid,
        immediately=immediately,
        signs_from=signs_from.isoformat(),
    )
    return created, still


def retire(session: Session, kid: str, now: datetime | None = None) -> None:
    """Stop publishing ``kid``: tokens it signed no longer verify. Never the signing key; a
    key published ahead may be retired (the rotation is cancelled)."""
    now = now or utcnow()
    row = next((key for key in live_keys(session) if key.kid == kid), None)
    if row is None:
        raise KeyError_(f"aucune clé active « {kid} »")
    signing = current_key(session, now)
    if signing is not None and row.kid == signing.kid:
        following = [key for key in live_keys(session) if key.signs_from > now]
        if following:
            raise KeyError_(
                f"« {kid} » signe les jetons jusqu'au {_when(following[-1].signs_from)} : "
                "retirez-la après"
            )
        raise KeyError_(f"« {kid} » signe les jetons : faites d'abord une rotation")
    row.retired_at = now
