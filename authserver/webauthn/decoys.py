"""Decoy credentials for username-first passkey options. Protocol only: no Flask, no I/O.

``POST /webauthn/login/options`` with an identifiant lists that account's passkeys in
``allowCredentials``. For an unknown identifiant, or an account without passkeys, the
answer must look the same (issue 11): so it lists decoys, which

- are the same at every call for one identifiant (a fresh random list would give the game
  away), and differ from one identifiant to the next: each is an HMAC, keyed with the
  server's secret, of the identifiant's lookup key;
- have the shape of real credentials: id sizes and transports of the usual providers,
  transports sorted as browsers report them (``getTransports()``);
- come as many as real accounts have passkeys: one most often, sometimes two or three.

No authenticator holds a decoy: a ceremony begun with them ends in the usual refusal.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from authserver.webauthn.registration import ExistingCredential

_LABEL = b"authserver.webauthn.decoy"


@dataclass(frozen=True)
class Shape:
    """A kind of credential as an allowCredentials entry shows it."""

    id_length: int  # bytes
    transports: tuple[str, ...]


# Weighted like the passkeys people register: mostly synced platform passkeys (phones,
# computers, password managers), some security keys. Transports sorted, as browsers give them.
SHAPES: tuple[tuple[Shape, int], ...] = (
    (Shape(16, ("hybrid", "internal")), 40),
    (Shape(20, ("hybrid", "internal")), 25),
    (Shape(32, ("hybrid", "internal")), 15),
    (Shape(32, ("internal",)), 8),
    (Shape(16, ("nfc", "usb")), 7),
    (Shape(64, ("nfc", "usb")), 5),
)
# How many passkeys an account has: one most often, sometimes a second device or a spare key.
COUNTS: tuple[tuple[int, int], ...] = ((1, 75), (2, 20), (3, 5))

T = TypeVar("T")


def _mac(secret: bytes, purpose: bytes, lookup_key: str) -> bytes:
    """64 bytes that only the server can compute, one stream per purpose and identifiant."""
    message = _LABEL + b"\x00" + purpose + b"\x00" + lookup_key.encode("utf-8", "replace")
    return hmac.new(secret, message, hashlib.sha512).digest()


def _pick(table: Sequence[tuple[T, int]], draw: bytes) -> T:
    """The entry of a weighted table that ``draw`` (uniform bytes) falls on."""
    total = sum(weight for _, weight in table)
    point = int.from_bytes(draw[:8], "big") % total
    for value, weight in table:
        if point < weight:
            return value
        point -= weight
    raise AssertionError("unreachable: point < total")


def decoy_credentials(*, secret: bytes, lookup_key: str) -> list[ExistingCredential]:
    """The decoys of one identifiant (its lookup key: case and width folded)."""
    count = _pick(COUNTS, _mac(secret, b"count", lookup_key))
    decoys = []
    for index in range(count):
        shape = _pick(SHAPES, _mac(secret, b"shape %d" % index, lookup_key))
        credential_id = _mac(secret, b"id %d" % index, lookup_key)[: shape.id_length]
        decoys.append(ExistingCredential(credential_id, shape.transports))
    return decoys
