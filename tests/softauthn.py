"""A software WebAuthn authenticator and client: real ceremonies without a browser.

``SoftAuthenticator`` answers the JSON options of the server
(``PublicKeyCredentialCreationOptionsJSON`` / ``PublicKeyCredentialRequestOptionsJSON``) with the
JSON forms a browser's ``toJSON()`` produces (``RegistrationResponseJSON`` /
``AuthenticationResponseJSON``): attestation ``none``, authenticator data with the flags asked
for, a COSE public key, and real signatures (ES256, EdDSA or RS256) made with ``cryptography``.

Every knob a test needs to play a misbehaving browser or authenticator is a keyword argument
(origin, ``crossOrigin``, ``topOrigin``, UP/UV/BE/BS, counter, rp id, user handle, bogus
signature). ``assert_`` is also the benchmark's load generator, so everything that does not
depend on the challenge is computed once per credential.

Used by tests and by ``bench/``: no pytest import, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

__all__ = ["ALGORITHMS", "SoftAuthenticator", "SoftCredential", "b64url", "cbor_encode"]

# COSE algorithm identifiers.
ALGORITHMS = {"ES256": -7, "EdDSA": -8, "RS256": -257}

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40

ZERO_AAGUID = bytes(16)
_KEEP: Any = object()  # "use the credential's own value" for user_handle


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    """base64url without padding, as in every WebAuthn JSON form."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- tiny CBOR encoder


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    if value < 0x100:
        return bytes([major << 5 | 24, value])
    if value < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", value)
    if value < 0x100000000:
        return bytes([major << 5 | 26]) + struct.pack(">I", value)
    return bytes([major << 5 | 27]) + struct.pack(">Q", value)


def cbor_encode(value: Any) -> bytes:
    """Minimal-length CBOR for what WebAuthn needs (ints, bytes, text, lists, maps, bools).

    Maps keep their insertion order: callers write COSE keys in CTAP2 canonical order.
    """
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if value is None:
        return b"\xf6"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return _head(2, len(raw)) + raw
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _head(3, len(raw)) + raw
    if isinstance(value, (list, tuple)):
        return _head(4, len(value)) + b"".join(cbor_encode(item) for item in value)
    if isinstance(value, dict):
        return _head(5, len(value)) + b"".join(
            cbor_encode(k) + cbor_encode(v) for k, v in value.items()
        )
    raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


# --------------------------------------------------------------------------- keys


def _new_key(alg: str) -> tuple[Any, dict[int, Any], Any]:
    """(private key, COSE public key map, signing function arguments)."""
    if alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = {
            1: 2,  # kty: EC2
            3: -7,  # alg: ES256
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
        return key, cose, (ec.ECDSA(hashes.SHA256()),)
    if alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        x = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return key, {1: 1, 3: -8, -1: 6, -2: x}, ()
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = key.public_key().public_numbers()
        cose = {
            1: 3,  # kty: RSA
            3: -257,  # alg: RS256
            -1: numbers.n.to_bytes(256, "big"),
            -2: numbers.e.to_bytes(3, "big"),
        }
        return key, cose, (padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(f"unsupported algorithm {alg!r} (ES256, EdDSA, RS256)")


@dataclass
class SoftCredential:
    """One credential held by the authenticator (a resident key)."""

    credential_id: bytes
    id_b64: str
    alg: str
    private_key: Any
    sign_args: tuple[Any, ...]
    cose_key: bytes
    user_handle: bytes | None
    user_handle_b64: str | None
    rp_id: str
    sign_count: int
    backup_eligible: bool
    backup_state: bool

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data, *self.sign_args)

    @property
    def public_key_der(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


# --------------------------------------------------------------------------- the authenticator


class SoftAuthenticator:
    """A platform-like passkey provider plus the browser glue around it.

    ``register`` and ``assert_`` take the server's options JSON and return the response JSON
    (ready for ``{"credential": ...}``). The private key, counter and user handle of every
    credential stay here, keyed by credential id.
    """

    def __init__(
        self,
        rp_id: str = "localhost",
        origin: str = "http://localhost",
        alg: str = "ES256",
        backup_eligible: bool = False,
        backup_state: bool = False,
        *,
        aaguid: bytes = ZERO_AAGUID,
        transports: tuple[str, ...] = ("internal", "hybrid"),
        attachment: str | None = "platform",
    ) -> None:
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {alg!r} (ES256, EdDSA, RS256)")
        if len(aaguid) != 16:
            raise ValueError("an AAGUID is 16 bytes")
        self.rp_id = rp_id
        self.origin = origin
        self.alg = alg
        self.backup_eligible = backup_eligible
        self.backup_state = backup_state
        self.aaguid = aaguid
        self.transports = list(transports)
        self.attachment = attachment
        self.credentials: dict[bytes, SoftCredential] = {}
        self._rp_id_hash = {rp_id: hashlib.sha256(rp_id.encode()).digest()}
        self._origin_json = {origin: json.dumps(origin)}

    # -- helpers

    def _rp_hash(self, rp_id: str) -> bytes:
        digest = self._rp_id_hash.get(rp_id)
        if digest is None:
            digest = self._rp_id_hash[rp_id] = hashlib.sha256(rp_id.encode()).digest()
        return digest

    def _client_data(
        self,
        kind: str,
        challenge: str,
        origin: str | None,
        cross_origin: bool,
        top_origin: str | None,
    ) -> bytes:
        # Same member order as browsers: type, challenge, origin, crossOrigin[, topOrigin].
        origin = origin or self.origin
        origin_json = self._origin_json.get(origin)
        if origin_json is None:
            origin_json = self._origin_json[origin] = json.dumps(origin)
        text = (
            '{"type":"'
            + kind
            + '","challenge":'
            + json.dumps(challenge)
            + ',"origin":'
            + origin_json
            + (',"crossOrigin":true' if cross_origin else ',"crossOrigin":false')
        )
        if top_origin is not None:
            text += ',"topOrigin":' + json.dumps(top_origin)
        return (text + "}").encode()

    @staticmethod
    def _flags(up: bool, uv: bool, be: bool, bs: bool, at: bool = False) -> int:
        return (
            (FLAG_UP if up else 0)
            | (FLAG_UV if uv else 0)
            | (FLAG_BE if be else 0)
            | (FLAG_BS if bs else 0)
            | (FLAG_AT if at else 0)
        )

    def credential(self, credential_id: bytes | str | None = None) -> SoftCredential:
        """A stored credential by id (bytes or base64url), or the last one created."""
        if credential_id is None:
            if not self.credentials:
                raise LookupError("this authenticator holds no credential")
            return next(reversed(self.credentials.values()))
        raw = b64url_decode(credential_id) if isinstance(credential_id, str) else credential_id
        try:
            return self.credentials[raw]
        except KeyError:
            raise LookupError(f"no credential {b64url(raw)} on this authenticator") from None

    # -- navigator.credentials.create()

    def register(
        self,
        creation_options_json: dict[str, Any],
        *,
        user_verified: bool = True,
        user_present: bool = True,
        cross_origin: bool = False,
        origin: str | None = None,
        top_origin: str | None = None,
        credential_id: bytes | None = None,
        sign_count: int = 0,
        rp_id: str | None = None,
        backup_eligible: bool | None = None,
        backup_state: bool | None = None,
        challenge: str | None = None,
        check_exclude: bool = True,
    ) -> dict[str, Any]:
        """A RegistrationResponseJSON with attestation ``none`` for these creation options.

        Like a real authenticator, refuses (``ValueError``, the browser's InvalidStateError)
        when it already holds a credential listed in ``excludeCredentials``, unless
        ``check_exclude`` is false.
        """
        options = creation_options_json
        offered = [param.get("alg") for param in options.get("pubKeyCredParams", [])]
        if offered and ALGORITHMS[self.alg] not in offered:
            raise ValueError(f"{self.alg} not among the offered algorithms {offered}")
        if check_exclude:
            for descriptor in options.get("excludeCredentials") or []:
                if b64url_decode(descriptor["id"]) in self.credentials:
                    raise ValueError("InvalidStateError: credential already registered here")
        rp_id = rp_id or (options.get("rp") or {}).get("id") or self.rp_id
        be = self.backup_eligible if backup_eligible is None else backup_eligible
        bs = self.backup_state if backup_state is None else backup_state
        user_handle_b64 = (options.get("user") or {}).get("id")
        user_handle = b64url_decode(user_handle_b64) if user_handle_b64 else None

        raw_id = credential_id if credential_id is not None else os.urandom(32)
        private_key, cose_map, sign_args = _new_key(self.alg)
        cose_key = cbor_encode(cose_map)
        cred = SoftCredential(
            credential_id=raw_id,
            id_b64=b64url(raw_id),
            alg=self.alg,
            private_key=private_key,
            sign_args=sign_args,
            cose_key=cose_key,
            user_handle=user_handle,
            user_handle_b64=b64url(user_handle) if user_handle is not None else None,
            rp_id=rp_id,
            sign_count=sign_count,
            backup_eligible=be,
            backup_state=bs,
        )

        auth_data = (
            self._rp_hash(rp_id)
            + bytes([self._flags(user_present, user_verified, be, bs, at=True)])
            + struct.pack(">I", sign_count)
            + self.aaguid
            + struct.pack(">H", len(raw_id))
            + raw_id
            + cose_key
        )
        attestation_object = cbor_encode({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data(
            "webauthn.create",
            challenge if challenge is not None else options["challenge"],
            origin,
            cross_origin,
            top_origin,
        )
        self.credentials.pop(raw_id, None)
        self.credentials[raw_id] = cred
        response: dict[str, Any] = {
            "id": cred.id_b64,
            "rawId": cred.id_b64,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "authenticatorData": b64url(auth_data),
                "transports": list(self.transports),
                "publicKey": b64url(cred.public_key_der),
                "publicKeyAlgorithm": ALGORITHMS[self.alg],
            },
            "clientExtensionResults": {},
        }
        if self.attachment:
            response["authenticatorAttachment"] = self.attachment
        return response

    # -- navigator.credentials.get()

    def _choose(self, options: dict[str, Any], credential_id: bytes | str | None) -> SoftCredential:
        if credential_id is not None:
            return self.credential(credential_id)
        allowed = options.get("allowCredentials") or []
        if not allowed:
            return self.credential()
        for descriptor in reversed(allowed):
            cred = self.credentials.get(b64url_decode(descriptor["id"]))
            if cred is not None:
                return cred
        raise LookupError("none of allowCredentials is on this authenticator")

    def assert_(
        self,
        request_options_json: dict[str, Any],
        *,
        credential_id: bytes | str | None = None,
        user_verified: bool = True,
        user_present: bool = True,
        origin: str | None = None,
        cross_origin: bool = False,
        top_origin: str | None = None,
        user_handle: bytes | str | None = _KEEP,
        sign_count: int | None = None,
        bogus_signature: bool = False,
        rp_id: str | None = None,
        backup_eligible: bool | None = None,
        backup_state: bool | None = None,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """An AuthenticationResponseJSON for these request options.

        ``user_handle``: the credential's own by default; ``None`` leaves it out; bytes are
        encoded, a string is sent as is. ``sign_count``: the stored counter plus one by default,
        else the given value (which becomes the stored one).
        """
        cred = self._choose(request_options_json, credential_id)
        if sign_count is None:
            sign_count = cred.sign_count + 1
        cred.sign_count = sign_count
        be = cred.backup_eligible if backup_eligible is None else backup_eligible
        bs = cred.backup_state if backup_state is None else backup_state
        auth_data = (
            self._rp_hash(rp_id or cred.rp_id)
            + bytes([self._flags(user_present, user_verified, be, bs)])
            + struct.pack(">I", sign_count)
        )
        client_data = self._client_data(
            "webauthn.get",
            challenge if challenge is not None else request_options_json["challenge"],
            origin,
            cross_origin,
            top_origin,
        )
        signed = auth_data + hashlib.sha256(client_data).digest()
        # A bogus signature is well formed but made over other bytes: only the check fails.
        signature = cred.sign(signed + b"\x00" if bogus_signature else signed)

        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if user_handle is _KEEP:
            if cred.user_handle_b64 is not None:
                response["userHandle"] = cred.user_handle_b64
        elif isinstance(user_handle, bytes):
            response["userHandle"] = b64url(user_handle)
        elif user_handle is not None:
            response["userHandle"] = user_handle
        result: dict[str, Any] = {
            "id": cred.id_b64,
            "rawId": cred.id_b64,
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        }
        if self.attachment:
            result["authenticatorAttachment"] = self.attachment
        return result
