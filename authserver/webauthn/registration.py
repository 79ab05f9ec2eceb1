"""Registration ceremony: creation options and verification. Protocol only: no Flask, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webauthn import generate_registration_options, verify_registration_response
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    options_to_json_dict,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialHint,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authserver.webauthn.client_data import check_origin, check_shape, parse_client_data
from authserver.webauthn.errors import UserVerificationRequired, VerificationFailed
from authserver.webauthn.rp import ALGORITHMS, RelyingParty

KNOWN_TRANSPORTS = {item.value for item in AuthenticatorTransport}
MAX_CREDENTIAL_ID = 1023  # bytes (WebAuthn L3 §7.1 step 25)


@dataclass(frozen=True)
class ExistingCredential:
    credential_id: bytes
    transports: tuple[str, ...]


def descriptors(existing: list[ExistingCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=item.credential_id,
            # Sorted, as browsers report them: what was stored in another order, and the
            # decoys (decoys.py), look alike.
            transports=[
                AuthenticatorTransport(t) for t in sorted(known_transports(item.transports))
            ],
        )
        for item in existing
    ]


def creation_options(
    *,
    rp: RelyingParty,
    challenge: bytes,
    user_handle: bytes,
    user_name: str,
    user_display_name: str,
    exclude_credentials: list[ExistingCredential],
    timeout_ms: int,
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptionsJSON: discoverable, UV required, no forced attachment."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=user_display_name,
        challenge=challenge,
        timeout=timeout_ms,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=descriptors(exclude_credentials),
        supported_pub_key_algs=list(ALGORITHMS),
        hints=[PublicKeyCredentialHint.CLIENT_DEVICE, PublicKeyCredentialHint.HYBRID],
    )
    return options_to_json_dict(options)


def known_transports(values: Iterable[str]) -> tuple[str, ...]:
    """The transports we know, each once, in the browser's order: at most the handful of
    AuthenticatorTransport values, so the stored list always fits its column
    (``["internal"] * 40`` is one ``internal``)."""
    return tuple(dict.fromkeys(t for t in values if t in KNOWN_TRANSPORTS))


@dataclass(frozen=True)
class NewCredential:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    attestation_format: str
    backup_eligible: bool
    backup_state: bool
    transports: tuple[str, ...]


def challenge_of(credential: Any) -> bytes:
    """The challenge the browser signed, to find the pending ceremony (shape checked first)."""
    return parse_client_data(check_shape(credential, "create"), "webauthn.create").challenge


def verify_registration(
    *,
    rp: RelyingParty,
    credential: dict[str, Any],
    expected_challenge: bytes,
    conditional: bool = False,
) -> NewCredential:
    """Every relying-party step of §7.1, the ones py_webauthn skips included.

    ``conditional``: the ceremony was a conditional create (WebAuthn L3 §5.1.3, offered right
    after a password login). The client then makes the credential without any gesture and
    MUST ask the authenticator for neither presence nor verification, so UP and UV are
    usually 0: step 14/15 of §7.1 are skipped for it, and only for it (the modal path still
    requires both). Logins with the passkey still require UP and UV.
    """
    check_shape(credential, "create")
    check_origin(parse_client_data(credential, "webauthn.create"), rp.origins)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            require_user_presence=not conditional,
            require_user_verification=not conditional,
            supported_pub_key_algs=list(ALGORITHMS),
        )
    except WebAuthnException as exc:
        if "user verification" in str(exc).lower():
            raise UserVerificationRequired(str(exc)) from None
        raise VerificationFailed(str(exc)) from None
    except Exception as exc:  # the library's parsers raise IndexError and the like on garbage
        raise VerificationFailed(f"{type(exc).__name__}: {exc}") from None
    if len(verified.credential_id) > MAX_CREDENTIAL_ID:
        raise VerificationFailed(f"credential id of {len(verified.credential_id)} bytes")
    try:
        # With attestation "none" nothing has used the key yet: refuse one that could never
        # verify a signature (off the curve, truncated, unknown curve) instead of storing it.
        decoded_public_key_to_cryptography(
            decode_credential_public_key(verified.credential_public_key)
        )
    except Exception as exc:
        raise VerificationFailed(f"unusable public key: {type(exc).__name__}: {exc}") from None
    transports = known_transports(credential["response"].get("transports", []))
    device_type = verified.credential_device_type
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=str(verified.aaguid),
        attestation_format=str(getattr(verified.fmt, "value", verified.fmt)),
        backup_eligible=device_type == CredentialDeviceType.MULTI_DEVICE,
        backup_state=bool(verified.credential_backed_up),
        transports=transports,
    )
