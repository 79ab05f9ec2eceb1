"""What an id_token and userinfo say about a user and a session. Pure functions: no Flask, no I/O.

``sub`` is the user's stable public id. The identifiant is never given (no
``preferred_username``): it is half of the user's password credential, and the consent page
promises « sans votre identifiant de connexion ». The ``portal`` scope adds
what the portal's services need: the establishment's SIRET and name, and whether the
account is certified. ``amr`` follows RFC 8176; ``acr`` names our two levels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from authserver.models import User

ACR_PASSKEY = "urn:authserver:passkey"
ACR_PASSWORD = "urn:authserver:pwd"  # noqa: S105 (an acr value, not a secret)
ACR_VALUES = (ACR_PASSWORD, ACR_PASSKEY)

SCOPES = ("openid", "profile", "email", "phone", "portal")
DEFAULT_CLIENT_SCOPE = " ".join(SCOPES)

# French descriptions shown on the consent page.
SCOPE_LABELS = {
    "openid": "Vous identifier (identifiant technique, sans votre identifiant de connexion)",
    "profile": "Vos nom et prénom",
    "email": "Votre adresse e-mail",
    "phone": "Votre numéro de téléphone",
    "portal": "Le SIRET et le nom de votre établissement, et la certification de votre compte",
}

CLAIMS_SUPPORTED = (
    "sub",
    "name",
    "given_name",
    "family_name",
    "email",
    "email_verified",
    "phone_number",
    "siret",
    "establishment_name",
    "certified",
    "acr",
    "amr",
    "auth_time",
    "sid",
)


def acr_for(method: str) -> str:
    return ACR_PASSKEY if method == "passkey" else ACR_PASSWORD


def session_sid(id_hash: bytes) -> str:
    """The session's public name (OIDC ``sid``, « Mes sessions »): derived, not the hash itself."""
    return hashlib.sha256(b"authserver-sid:" + id_hash).hexdigest()[:32]


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def user_claims(
    user: User, scopes: Iterable[str], establishment_name: str | None
) -> dict[str, Any]:
    """The claims the granted scopes allow, for the id_token and userinfo alike."""
    granted = set(scopes)
    claims: dict[str, Any] = {"sub": user.public_id}
    if "profile" in granted:
        claims["name"] = user.display_name
        if user.first_name:
            claims["given_name"] = user.first_name
        if user.last_name:
            claims["family_name"] = user.last_name
    if "email" in granted:
        claims["email"] = user.email
        claims["email_verified"] = user.activated_at is not None
    if "phone" in granted and user.phone:
        claims["phone_number"] = user.phone
    if "portal" in granted:
        claims["siret"] = user.siret
        claims["establishment_name"] = establishment_name if user.siret else None
        claims["certified"] = user.certified_at is not None
    return claims


def requires_passkey(acr_values: str | None) -> bool:
    return ACR_PASSKEY in (acr_values or "").split()
