"""ES256 signing keys kept in the database; storage and crypto only (no Flask).

The newest unretired key signs; every unretired key is published on the JWKS, so after
``authserver oidc rotate-key`` tokens signed by the previous key still verify until it is
retired (``authserver oidc retire-key KID``). Private halves are sealed with AES-GCM under a
key derived from AUTHSERVER_SECRET_KEY.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
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


class KeyError_(Exception):
    """A key operation the operator asked for cannot be done; the message says why."""


def _sealing_key(secret_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_AAD).derive(
        secret_key.encode()
    )


def seal(secret_key: str, data: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_sealing_key(secret_key)).encrypt(nonce, data, _AAD)


def unseal(secret_key: str, sealed: bytes) -> bytes:
    return AESGCM(_sealing_key(secret_key)).decrypt(sealed[:12], sealed[12:], _AAD)


def create_key(session: Session, secret_key: str, now: datetime | None = None) -> OIDCSigningKey:
    """A new key pair; it signs from now on (newest). The caller commits."""
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
    )
    session.add(row)
    session.flush()
    return row


def live_keys(session: Session) -> list[OIDCSigningKey]:
    return list(
        session.scalars(
            select(OIDCSigningKey)
            .where(OIDCSigningKey.retired_at.is_(None))
            .order_by(OIDCSigningKey.created_at.desc(), OIDCSigningKey.kid.desc())
        )
    )


def signing_key(session: Session, secret_key: str) -> tuple[str, ECKey]:
    """The key that signs now: the newest live one we can unseal (one is made if none)."""
    for row in live_keys(session):
        try:
            data = json.loads(unseal(secret_key, row.private_jwk_sealed))
        except InvalidTag:
            log.error("OIDC key %s cannot be unsealed (AUTHSERVER_SECRET_KEY changed?)", row.kid)
            continue
        return row.kid, ECKey.import_key(data)
    row = create_key(session, secret_key)
    log.warning("no usable OIDC signing key: created %s", row.kid)
    return signing_key(session, secret_key)


def public_jwks(session: Session) -> dict[str, Any]:
    return {"keys": [row.public_jwk for row in live_keys(session)]}


def rotate(session: Session, secret_key: str) -> tuple[OIDCSigningKey, list[str]]:
    """Make a new signing key; return it and the kids that still verify beside it."""
    previous = [row.kid for row in live_keys(session)]
    return create_key(session, secret_key), previous


def retire(session: Session, kid: str, now: datetime | None = None) -> None:
    """Stop publishing ``kid``: tokens it signed no longer verify. Never the signing key."""
    keys = live_keys(session)
    row = next((key for key in keys if key.kid == kid), None)
    if row is None:
        raise KeyError_(f"aucune clé active « {kid} »")
    if row is keys[0]:
        raise KeyError_(f"« {kid} » signe les jetons : faites d'abord une rotation")
    row.retired_at = now or utcnow()
