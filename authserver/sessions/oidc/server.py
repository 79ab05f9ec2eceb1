"""Authlib's authorization server bound to our storage: grants, endpoints, token objects.

Thin glue: protocol rules are Authlib's (RFC 6749, 7636, 7009, 7662, OIDC Core and
RP-Initiated Logout); what is ours is where things are kept (storage.py), how tokens are
tied to the login session, and the policy on top (PKCE S256 for every client, codes spent
on first presentation, refresh rotation with reuse detection, malformed input answered with
the protocol's error rather than Authlib's exceptions).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    UnsupportedResponseTypeError,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, Response, current_app, g, json
from joserfc.jwk import KeySet

from authserver import db
from authserver.models import AuthSession, OAuthCode, User, utcnow
from authserver.sessions import store
from authserver.sessions.login import end_session, lifetimes
from authserver.sessions.oidc import claims, keys, params, storage
from authserver.sessions.oidc.clients import (
    MalformedCredentials,
    RegisteredClient,
    basic_credentials,
    find_client,
)

SERVER_KEY = "authserver.oidc.server"
ID_TOKEN_TTL = 600

# French sentences beside the RFC's error codes (the contract's "message").
MESSAGES = {
    "invalid_request": "La requête est invalide.",
    "invalid_client": "Le service n'a pas pu être authentifié.",
    "invalid_grant": "Le code ou le jeton est invalide, expiré ou déjà utilisé.",
    "unauthorized_client": "Ce service n'est pas autorisé à faire cette demande.",
    "unsupported_grant_type": "Ce type de demande n'est pas pris en charge.",
    "unsupported_response_type": "Ce type de réponse n'est pas pris en charge.",
    "unsupported_token_type": "Ce type de jeton n'est pas pris en charge.",
    "invalid_scope": "La portée demandée n'est pas autorisée.",
    "invalid_token": "Le jeton est invalide, expiré ou révoqué.",
    "insufficient_scope": "Le jeton ne donne pas accès à cette information.",
    "access_denied": "L'accès a été refusé.",
}


def issuer() -> str:
    return current_app.config["AUTHSERVER"].base_url


def _session() -> Any:
    return db.session()


# --------------------------------------------------------------------------- token objects


class IssuedCode:
    """Authlib's view of a spent authorization code."""

    def __init__(self, row: OAuthCode, auth_session: AuthSession) -> None:
        self.row = row
        self.auth_session = auth_session
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return claims.epoch(self.row.auth_time)

    def get_acr(self) -> str:
        return self.row.acr

    def get_amr(self) -> list[str]:
        return self.row.amr.split()


class IssuedToken:
    """Authlib's view of a token row; active only while its login session is live."""

    def __init__(self, loaded: storage.Loaded, kind: str, now: datetime | None = None) -> None:
        self.row = loaded.token
        self.auth_session = loaded.auth_session
        self.user = loaded.user
        self.kind = kind  # "access_token" or "refresh_token"
        self.introspected_by: RegisteredClient | None = None  # set by Introspection
        self.client_id = self.row.client_id
        self.scope = self.row.scope
        now = now or utcnow()
        self.session_live = store.is_live(self.auth_session, lifetimes(), now)
        if kind == "refresh_token":
            expires = self.row.refresh_expires_at
            self.expired = expires is None or expires <= now
        else:
            self.expired = self.row.access_expires_at <= now

    def check_client(self, client: RegisteredClient) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.row.access_expires_at - self.row.issued_at).total_seconds())

    def get_expires_at(self) -> int:
        moment = (
            self.row.refresh_expires_at if self.kind == "refresh_token" else None
        ) or self.row.access_expires_at
        return claims.epoch(moment)

    def is_expired(self) -> bool:
        return self.expired

    def is_revoked(self) -> bool:
        if self.row.revoked_at is not None or not self.session_live:
            return True
        return self.kind == "refresh_token" and self.row.refresh_used_at is not None

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> RegisteredClient | None:
        return find_client(_session(), self.client_id)


def find_token(token: str, hint: str | None) -> IssuedToken | None:
    order = ["refresh_token", "access_token"] if hint == "refresh_token" else None
    for kind in order or ["access_token", "refresh_token"]:
        lookup = storage.by_refresh_token if kind == "refresh_token" else storage.by_access_token
        loaded = lookup(_session(), token)
        if loaded is not None:
            return IssuedToken(loaded, kind)
    return None


# --------------------------------------------------------------------------- signing


def signing_key() -> tuple[str, Any]:
    """The current key, loaded once per request."""
    if "oidc_signing_key" not in g:
        settings = current_app.config["AUTHSERVER"]
        g.oidc_signing_key = keys.signing_key(
            _session(), settings.secret_key, fallbacks=settings.secret_key_fallbacks
        )
    return g.oidc_signing_key


def user_info(user: User, scope: str) -> dict[str, Any]:
    name = None
    if "portal" in scope.split():
        name = storage.establishment_name(_session(), user.siret)
    return claims.user_claims(user, scope.split(), name)


# --------------------------------------------------------------------------- grants


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256, required of every client, confidential ones included (OAuth 2.1,
    ASVS 10.4.6): a stolen code is useless without the verifier even with the secret.
    Authlib's ``CodeChallenge(required=True)`` forces it on public clients only; ``plain``
    gives nothing over a leak of the request, so only S256 is taken."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 (Authlib's class attribute)

    def validate_code_challenge(self, grant: Any, redirect_uri: str | None) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE (code_challenge, S256) is required")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        if not self.get_authorization_code_challenge(grant.request.authorization_code):
            # Issued before PKCE was required of every client: nothing to prove it with.
            raise InvalidGrantError("The code was not bound to a code_challenge")
        super().validate_code_verifier(grant, result)


class ParameterScreen:
    """Authlib extension: the authorization request's parameters as ``params`` allows them.

    Run before the payload's other checks (PKCE, nonce: Authlib's hooks are a set, in no
    order), once the client and its redirect URI are known: the error goes back to the client.
    """

    def __call__(self, grant: Any) -> None:
        grant.register_hook("before_validate_authorization_request_payload", self.screen)

    def screen(self, grant: Any, redirect_uri: str | None) -> None:
        problem = params.authorization_problem(grant.request.payload.datalist)
        if problem:
            raise InvalidRequestError(problem)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: RegisteredClient) -> str:
        """Authlib's rule (always given, registered exactly), with a description that does not
        echo the URI: Authlib refuses (ValueError, a 500) a description holding ``"``, ``\\``
        or non-ASCII."""
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri or not client.check_redirect_uri(redirect_uri):
            raise InvalidRequestError("redirect_uri is missing or not registered for the client")
        return str(redirect_uri)

    def save_authorization_code(self, code: str, request: Any) -> None:
        record: AuthSession = g.oidc_auth_session
        data = request.payload.data
        storage.add_code(
            _session(),
            code=code,
            client_id=request.client.get_client_id(),
            auth_session=record,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            acr=claims.acr_for(record.method),
        )

    def query_authorization_code(self, code: str, client: RegisteredClient) -> IssuedCode | None:
        session = _session()
        spent = storage.redeem_code(session, code)
        row = spent.code
        if row is None or row.client_id != client.get_client_id():
            return None
        if spent.reused:
            revoked = storage.revoke_issued_from_code(session, row.id)
            current_app.logger.warning(
                "authorization code presented twice (client %s): %d token(s) revoked",
                row.client_id,
                revoked,
            )
            return None
        if row.expires_at <= utcnow():
            return None
        record = storage.auth_session(session, row.session_id_hash)
        if record is None or not store.is_live(record, lifetimes()):
            return None
        return IssuedCode(row, record)

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        """Nothing to do: the code was spent when presented (kept to detect a reuse)."""

    def authenticate_user(self, authorization_code: IssuedCode) -> User:
        return authorization_code.auth_session.user


class RefreshGrant(grants.RefreshTokenGrant):
    """Rotation with reuse detection. The presented token is spent only once the whole request
    is known to be good (client, token, scope): a refused refresh leaves it usable."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        session = _session()
        loaded = storage.by_refresh_token(session, refresh_token)
        if loaded is None:
            return None
        row = loaded.token
        if row.refresh_used_at is not None or row.revoked_at is not None:
            # A rotated (or revoked) refresh token came back: someone holds a copy.
            revoked = storage.revoke_family(session, row.family, "refresh_reuse")
            current_app.logger.warning(
                "refresh token reused (client %s): family of %d token(s) revoked",
                row.client_id,
                revoked,
            )
            return None
        token = IssuedToken(loaded, "refresh_token")
        if token.is_expired() or not token.session_live:
            return None
        return token

    def validate_token_request(self) -> None:
        super().validate_token_request()  # client, token (its client), scope: Authlib's checks
        token: IssuedToken = self.request.refresh_token
        session = _session()
        if not storage.claim_refresh(session, token.row.id):
            # Another request spent it between our read and now: a reuse, as above.
            storage.revoke_family(session, token.row.family, "refresh_reuse")
            raise InvalidGrantError()
        if store.needs_touch(token.auth_session):
            store.touch(session, token.auth_session)  # the service acts for a present user

    def authenticate_user(self, refresh_token: IssuedToken) -> User:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        """Nothing to do: the old refresh token was marked used in validate_token_request."""


class OpenID(OpenIDCode):
    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return storage.nonce_used(_session(), request.payload.client_id, nonce)

    def get_client_algorithm(self, client: Any) -> str:
        return keys.ALG

    def resolve_client_private_key(self, client: Any) -> Any:
        return signing_key()[1]

    def get_encode_header(self, client: Any) -> dict[str, str]:
        return {"alg": keys.ALG, "kid": signing_key()[0], "typ": "JWT"}

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": issuer(),
            "aud": client.get_client_id(),
            "iat": now,
            "exp": now + ID_TOKEN_TTL,
        }

    def get_authorization_code_claims(self, authorization_code: IssuedCode) -> dict[str, Any]:
        result = super().get_authorization_code_claims(authorization_code)
        result["sid"] = claims.session_sid(authorization_code.auth_session.id_hash)
        return result

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        return user_info(user, scope)


# --------------------------------------------------------------------------- endpoints


class BearerValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> IssuedToken | None:
        loaded = storage.by_access_token(_session(), token_string)
        return IssuedToken(loaded, "access_token") if loaded else None


class UserInfo(UserInfoEndpoint):
    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        return user_info(user, scope)

    def get_issuer(self) -> str:
        return issuer()


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: IssuedToken, request: Any) -> None:
        if token.kind == "refresh_token":
            # RFC 7009 §2.1: revoking a refresh token ends the grant's access tokens too.
            storage.revoke_family(_session(), token.row.family, "revoked_by_client")
        else:
            storage.expire_access_token(_session(), token.row.id)


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: IssuedToken, client: RegisteredClient, request: Any) -> bool:
        # The token's own service, or a first-party resource server of the portal.
        token.introspected_by = client
        return token.client_id == client.get_client_id() or client.first_party

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        answer = {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "scope": token.scope,
            "sub": token.user.public_id,
            "username": token.user.username,
            "aud": token.client_id,
            "iss": issuer(),
            "iat": claims.epoch(token.row.issued_at),
            "exp": token.get_expires_at(),
            "auth_time": claims.epoch(token.row.auth_time),
            "acr": token.row.acr,
            "amr": token.row.amr.split(),
            "sid": claims.session_sid(token.row.session_id_hash),
        }
        caller = token.introspected_by
        if caller is None or not caller.first_party:
            # The identifiant only for the portal's own resource servers (as forward-auth's
            # X-Auth-User); a third-party service gets ``sub``, as in its id_token.
            del answer["username"]
        return answer


class EndSession(EndSessionEndpoint):
    def get_server_jwks(self) -> KeySet:
        document = keys.public_jwks(_session())
        if not document["keys"]:  # nothing ever signed: no hint can be valid
            signing_key()
            document = keys.public_jwks(_session())
        return KeySet.import_key_set(document)

    def get_algorithms(self) -> list[str]:
        return [keys.ALG]

    def validate_request(self, request: Any) -> Any:
        validated = super().validate_request(request)
        found = validated.id_token_claims
        if found is not None and found.get("iss") != issuer():
            raise InvalidRequestError("id_token_hint was not issued here")
        return validated

    def end_session(self, end_session_request: Any) -> None:
        end_session()  # this browser's session: revoked, back-channel logouts queued


# --------------------------------------------------------------------------- the server


class UnsupportedResponseType(UnsupportedResponseTypeError):
    """Authlib's error, without the request's value in its description (see above)."""

    def get_error_description(self) -> str:
        return "only response_type=code is supported"


def authenticate_basic(query_client: Any, request: Any) -> RegisteredClient | None:
    """``client_secret_basic``, Authlib's rule with our reading of the header: a client that
    sent a Basic header we cannot read gets 401 invalid_client (RFC 6749 §5.2), not a 500 nor
    a fall-through to another method."""
    try:
        found = basic_credentials(request.headers.get("Authorization"))
    except MalformedCredentials:
        raise InvalidClientError(
            status_code=401, description="Malformed HTTP Basic credentials"
        ) from None
    if found is None or not all(found):
        return None
    client_id, secret = found
    client = query_client(client_id)
    if client is None:
        raise InvalidClientError(status_code=401, description="Unknown client")
    return client if client.check_client_secret(secret) else None


class Server(AuthorizationServer):
    def query_client(self, client_id: str) -> RegisteredClient | None:
        return find_client(_session(), client_id)

    def get_authorization_grant(self, request: Any) -> Any:
        """Authlib's, except for a response type it does not know (the error it builds then
        echoes the value, and one holding ``"`` was a 500). As Authlib does, the error goes
        back to the client only when the redirect URI is one of the client's."""
        if CodeGrant.check_authorization_endpoint(request):
            return super().get_authorization_grant(request)
        client = self.query_client(request.payload.client_id)
        uri = request.payload.redirect_uri
        known = client is not None and bool(uri) and client.check_redirect_uri(uri)
        raise UnsupportedResponseType(
            request.payload.response_type, redirect_uri=uri if known else None
        )

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        client = request.client
        if request.payload.grant_type == "refresh_token":
            old: IssuedToken = request.refresh_token
            record, row = old.auth_session, old.row
            storage.add_token(
                _session(),
                client_id=client.get_client_id(),
                auth_session=record,
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                scope=token.get("scope", ""),
                acr=row.acr,
                amr=row.amr,
                auth_time=row.auth_time,
                family=row.family,
                code_id=row.code_id,
            )
            return
        code: IssuedCode = request.authorization_code
        storage.add_token(
            _session(),
            client_id=client.get_client_id(),
            auth_session=code.auth_session,
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            scope=token.get("scope", ""),
            acr=code.row.acr,
            amr=code.row.amr,
            auth_time=code.row.auth_time,
            code_id=code.row.id,
        )

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        if isinstance(payload, dict):
            error = payload.get("error")
            if error and "message" not in payload:
                payload = {**payload, "message": MESSAGES.get(error, MESSAGES["invalid_request"])}
            payload = json.dumps(payload)
        return Response(payload, status=status_code, headers=headers)


def _token_generator() -> BearerTokenGenerator:
    def access(**_: Any) -> str:
        return storage.new_token(32)

    def refresh(**_: Any) -> str:
        return storage.new_token(48)

    def expires_in(client: Any, grant_type: str) -> int:
        return int(storage.ACCESS_TTL.total_seconds())

    return BearerTokenGenerator(access, refresh, expires_in)


def build_server(app: Flask) -> Server:
    server = Server()
    server.init_app(app)
    server.scopes_supported = list(claims.SCOPES)
    server.register_token_generator("default", _token_generator())
    server.register_client_auth_method("client_secret_basic", authenticate_basic)
    server.register_grant(
        CodeGrant, [ParameterScreen(), S256CodeChallenge(required=True), OpenID()]
    )
    server.register_grant(RefreshGrant)
    protector = ResourceProtector()
    protector.register_token_validator(BearerValidator())
    server.register_endpoint(UserInfo(resource_protector=protector))
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_endpoint(EndSession)
    app.extensions[SERVER_KEY] = server
    return server


def server_of(app: Flask | None = None) -> Server:
    return (app or current_app).extensions[SERVER_KEY]
