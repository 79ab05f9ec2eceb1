"""Authentication ceremony: request options and assertion verification. No Flask, no I/O.

On top of py_webauthn: crossOrigin/topOrigin refused, userHandle bound to the
credential's owner, UV required, backup eligibility must not change, and a
signature counter that does not increase is reported as a clone (only after the
signature itself was verified, so a forged response cannot get a passkey blocked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webauthn import generate_authentication_options, verify_authentication_response
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorAssertionResponse,
    CredentialDeviceType,
    UserVerificationRequirement,
)

from authserver.webauthn.client_data import (
    ClientData,
    b64,
    check_origin,
    check_shape,
    parse_client_data,
)
from authserver.webauthn.errors import (
    BackupEligibilityChanged,
    CloneDetected,
    UserHandleMismatch,
    UserVerificationRequired,
    VerificationFailed,
)
from authserver.webauthn.registration import ExistingCredential, descriptors
from authserver.webauthn.rp import RelyingParty


def request_options(
    *,
    rp: RelyingParty,
    challenge: bytes,
    allow_credentials: list[ExistingCredential] | None,
    timeout_ms: int,
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptionsJSON; no allowCredentials means discoverable."""
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=timeout_ms,
        allow_credentials=descriptors(allow_credentials or []),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json_dict(options)


@dataclass(frozen=True)
class Assertion:
    """What the browser sent, read before looking anything up."""

    credential: dict[str, Any]
    credential_id: bytes
    challenge: bytes
    user_handle: bytes | None
    client_data: ClientData
    # The same response decoded once for py_webauthn (it would parse the JSON form again).
    parsed: AuthenticationCredential


def read_assertion(credential: Any) -> Assertion:
    check_shape(credential, "get")
    client_data = parse_client_data(credential, "webauthn.get")
    raw_id = b64(credential["rawId"], "rawId") or b""
    response = credential["response"]
    user_handle = b64(response.get("userHandle"), "userHandle", optional=True)
    parsed = AuthenticationCredential(
        id=credential["id"],
        raw_id=raw_id,
        response=AuthenticatorAssertionResponse(
            client_data_json=b64(response["clientDataJSON"], "clientDataJSON") or b"",
            authenticator_data=b64(response["authenticatorData"], "authenticatorData") or b"",
            signature=b64(response["signature"], "signature") or b"",
            user_handle=user_handle,
        ),
    )
    return Assertion(
        credential=credential,
        credential_id=raw_id,
        challenge=client_data.challenge,
        user_handle=user_handle or None,
        client_data=client_data,
        parsed=parsed,
    )


@dataclass(frozen=True)
class StoredCredential:
    public_key: bytes
    sign_count: int
    backup_eligible: bool
    owner_user_handle: bytes


@dataclass(frozen=True)
class VerifiedAssertion:
    new_sign_count: int
    backup_state: bool


def verify_assertion(
    *,
    rp: RelyingParty,
    assertion: Assertion,
    expected_challenge: bytes,
    stored: StoredCredential,
    require_user_handle: bool,
) -> VerifiedAssertion:
    check_origin(assertion.client_data, rp.origins)
    if assertion.user_handle is None:
        if require_user_handle:
            raise UserHandleMismatch("discoverable login without userHandle")
    elif assertion.user_handle != stored.owner_user_handle:
        raise UserHandleMismatch("userHandle is not the credential owner's")
    try:
        # Counter 0 here: py_webauthn's own counter check would hide a clone behind a
        # generic failure; we compare after the signature is known to be genuine.
        verified = verify_authentication_response(
            credential=assertion.parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            credential_public_key=stored.public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except WebAuthnException as exc:
        text = str(exc).lower()
        if "user verification" in text:
            raise UserVerificationRequired(str(exc)) from None
        raise VerificationFailed(str(exc)) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise VerificationFailed(f"{type(exc).__name__}: {exc}") from None

    new_count = verified.new_sign_count
    if (new_count > 0 or stored.sign_count > 0) and new_count <= stored.sign_count:
        raise CloneDetected(f"sign count {new_count} after {stored.sign_count}")
    backup_eligible = verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    if backup_eligible != stored.backup_eligible:
        raise BackupEligibilityChanged(
            f"BE {backup_eligible}, registered with {stored.backup_eligible}"
        )
    return VerifiedAssertion(new_sign_count=new_count, backup_state=verified.credential_backed_up)
