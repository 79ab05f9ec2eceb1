"""Registered clients: creation (CLI), lookup, and the Authlib client protocol.

A confidential client's secret is 32 random bytes shown once; only its SHA-256 is kept and
compared in constant time. (A fast hash is enough for a random 256-bit secret: nothing to
guess; Argon2 would only slow the token endpoint down.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, list_to_scope, scope_to_list
from sqlalchemy import select
from sqlalchemy.orm import Session

from authserver.models import OAuthClient
from authserver.sessions.oidc.claims import DEFAULT_CLIENT_SCOPE, SCOPES

GRANT_TYPES = ("authorization_code", "refresh_token")


class InvalidClientMetadata(ValueError):
    """A value given to ``client create`` is not acceptable; the message is French."""


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _check_uri(uri: str, what: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise InvalidClientMetadata(f"{what} : URL http(s) sans fragment attendue, reçu {uri!r}")
    return uri


@dataclass(frozen=True)
class NewClient:
    row: OAuthClient
    secret: str | None


def create_client(
    session: Session,
    *,
    name: str,
    redirect_uris: list[str],
    public: bool = False,
    first_party: bool = False,
    post_logout_redirect_uris: list[str] | None = None,
    backchannel_logout_uri: str | None = None,
    scope: str | None = None,
) -> NewClient:
    """Register a client; the caller commits. The secret is returned once, never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidClientMetadata("--name : de 1 à 100 caractères")
    if not redirect_uris:
        raise InvalidClientMetadata("--redirect-uri : au moins une adresse de retour")
    redirect_uris = [_check_uri(uri, "--redirect-uri") for uri in redirect_uris]
    post_logout = [
        _check_uri(uri, "--post-logout-redirect-uri") for uri in post_logout_redirect_uris or []
    ]
    if backchannel_logout_uri:
        _check_uri(backchannel_logout_uri, "--backchannel-logout-uri")
    wanted = scope_to_list(scope or DEFAULT_CLIENT_SCOPE) or []
    unknown = [item for item in wanted if item not in SCOPES]
    if unknown:
        raise InvalidClientMetadata(f"--scope : portées inconnues {unknown}, possibles {SCOPES}")
    secret = None if public else secrets.token_urlsafe(32)
    row = OAuthClient(
        client_id=secrets.token_urlsafe(18),
        secret_hash=hash_secret(secret) if secret else None,
        name=name,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout,
        backchannel_logout_uri=backchannel_logout_uri or None,
        scope=list_to_scope(wanted),
        public=public,
        first_party=first_party,
    )
    session.add(row)
    session.flush()
    return NewClient(row, secret)


def describe(new: NewClient) -> dict[str, Any]:
    """The JSON ``authserver client create`` prints."""
    row = new.row
    return {
        "client_id": row.client_id,
        "client_secret": new.secret,
        "name": row.name,
        "public": row.public,
        "first_party": row.first_party,
        "redirect_uris": row.redirect_uris,
        "post_logout_redirect_uris": row.post_logout_redirect_uris,
        "backchannel_logout_uri": row.backchannel_logout_uri,
        "scope": row.scope,
        "token_endpoint_auth_method": "none" if row.public else "client_secret_basic",
    }


def find_client(session: Session, client_id: str | None) -> RegisteredClient | None:
    if not client_id or len(client_id) > 48:
        return None
    row = session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    if row is None or row.disabled_at is not None:
        return None
    return RegisteredClient(row)


class RegisteredClient(ClientMixin):
    """Authlib's view of a client row."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id
        self.public = row.public
        self.first_party = row.first_party
        self.name = row.name
        self.client_metadata = {
            "redirect_uris": list(row.redirect_uris),
            "post_logout_redirect_uris": list(row.post_logout_redirect_uris or []),
        }

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Always required in the request: a client with several URIs must say which.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.row.scope.split())
        return list_to_scope([item for item in scope_to_list(scope) if item in allowed])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris  # exact match, RFC 9700 §4.1.3

    def check_client_secret(self, client_secret: str) -> bool:
        if self.row.secret_hash is None:
            return False
        return hmac.compare_digest(hash_secret(client_secret), self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES
