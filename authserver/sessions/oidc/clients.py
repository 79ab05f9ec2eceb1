"""Registered clients: creation (CLI), lookup, and the Authlib client protocol.

A confidential client's secret is 32 random bytes shown once; only its SHA-256 is kept and
compared in constant time. (A fast hash is enough for a random 256-bit secret: nothing to
guess; Argon2 would only slow the token endpoint down.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, list_to_scope, scope_to_list
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from authserver.alerts.events import after_commit
from authserver.models import OAuthClient
from authserver.sessions.oidc.claims import DEFAULT_CLIENT_SCOPE, SCOPES

GRANT_TYPES = ("authorization_code", "refresh_token")


# RFC 6749's VSCHAR without the space, at most our column's size: anything else names no
# client (and never reaches the database: PostgreSQL refuses a NUL, for one).
CLIENT_ID = re.compile(r"[\x21-\x7e]{1,48}")


class InvalidClientMetadata(ValueError):
    """A value given to ``client create`` is not acceptable; the message is French."""


class MalformedCredentials(ValueError):
    """An ``Authorization: Basic`` header that cannot be read as RFC 6749 §2.3.1 says."""


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


def new_client_id() -> str:
    """A random client_id (144 bits) that never starts with ``-``: operators pass it to
    ``authserver client …`` as an argument, where a leading dash reads as an option (1 id in
    64 could not be given without ``--``)."""
    while True:
        client_id = secrets.token_urlsafe(18)
        if not client_id.startswith("-"):
            return client_id


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
    refresh_tokens: bool = True,
) -> NewClient:
    """Register a client; the caller commits. The secret is returned once, never stored.

    ``refresh_tokens=False``: the client may only use the authorization code (a service that
    needs no access beyond the login itself gets no refresh token)."""
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
        client_id=new_client_id(),
        secret_hash=hash_secret(secret) if secret else None,
        name=name,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout,
        backchannel_logout_uri=backchannel_logout_uri or None,
        scope=list_to_scope(wanted),
        public=public,
        first_party=first_party,
        grant_types=list(GRANT_TYPES if refresh_tokens else GRANT_TYPES[:1]),
    )
    session.add(row)
    session.flush()
    after_commit(
        session, "oidc_client_created", client_id=row.client_id, client_name=name, public=public
    )
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
        "grant_types": row.grant_types or list(GRANT_TYPES),
        "token_endpoint_auth_method": "none" if row.public else "client_secret_basic",
    }


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The (client_id, client_secret) of an ``Authorization: Basic`` header, or None when the
    request has no such header (it may authenticate otherwise).

    RFC 6749 §2.3.1: each part form-urlencoded, joined by a colon, in base64. Raises
    MalformedCredentials when the client did try Basic but the value is not strict base64,
    not UTF-8, has no colon, or a percent-escape that is not UTF-8.
    """
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            raise MalformedCredentials("no colon between client_id and secret")
        return unquote(client_id, errors="strict"), unquote(secret, errors="strict")
    except ValueError as error:  # binascii.Error, UnicodeError, non-ASCII str: all ValueError
        raise MalformedCredentials(str(error)) from None


def find_client(session: Session, client_id: str | None) -> RegisteredClient | None:
    if not client_id or not CLIENT_ID.fullmatch(client_id):
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
        allowed = self.row.grant_types or GRANT_TYPES  # None: registered before the setting
        return grant_type in GRANT_TYPES and grant_type in allowed


def rotate_secret(row: OAuthClient) -> str:
    """A new secret for a confidential client, shown once; the old one stops working at
    commit (a service rolls it out, then asks for the rotation: no overlap is kept)."""
    if row.public:
        raise InvalidClientMetadata("client public : il n'a pas de secret")
    secret = secrets.token_urlsafe(32)
    row.secret_hash = hash_secret(secret)
    session = object_session(row)
    if session is not None:
        after_commit(session, "oidc_client_secret_rotated", client_id=row.client_id)
    return secret


def delete_client(session: Session, row: OAuthClient) -> dict[str, int]:
    """Remove a client with everything issued to it (codes, tokens, consents, pending
    logout notices): a deleted service keeps no access. Return what was removed."""
    from sqlalchemy import delete

    from authserver.models import BackchannelLogout, OAuthCode, OAuthConsent, OAuthToken

    removed: dict[str, int] = {}
    for name, model in (
        ("tokens", OAuthToken),
        ("codes", OAuthCode),
        ("consents", OAuthConsent),
        ("logout_notices", BackchannelLogout),
    ):
        removed[name] = session.execute(
            delete(model)
            .where(model.client_id == row.client_id)
            .execution_options(synchronize_session=False)
        ).rowcount
    after_commit(session, "oidc_client_deleted", client_id=row.client_id, **removed)
    session.delete(row)
    return removed
