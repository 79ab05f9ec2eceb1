"""The OpenAPI 3.1 description of the JSON APIs (issue 15), served at ``/openapi.json``.

Written by hand, next to the code it describes, rather than generated: the WebAuthn bodies
follow the W3C's JSON forms and the OIDC endpoints Authlib's answers, neither of which a
Flask-side generator knows. tests/test_openapi.py keeps it true: every operation is called
on the real app and every answer is validated against the schema of its status code.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


CSRF = [{"name": "X-CSRFToken", "in": "header", "required": True, "schema": {"type": "string"}}]
STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}


def _page_of(item: str) -> dict[str, Any]:
    """The security API's keyset page: ``items`` and the cursor of the next page."""
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_cursor": NULLABLE_STRING,
        },
    }


def _security_listing(summary: str, page: str, description: str) -> dict[str, Any]:
    """A GET of the security API: its paging parameters and its answers."""
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                {"name": "cursor", "in": "query", "schema": STRING},
            ],
            "responses": {
                "200": _json(page, description),
                "400": _error("Invalid filter, limit or cursor"),
                "401": _error("No valid credentials"),
                "403": _error("Not a console role"),
            },
        }
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": STRING, "message": STRING},
        "description": "The contract's error form: a machine code and a French sentence.",
    },
    "OAuthError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": STRING, "error_description": STRING},
        "description": "RFC 6749 §5.2 error (OAuth and OpenID Connect endpoints).",
    },
    "CreationOptions": {
        "type": "object",
        "description": "PublicKeyCredentialCreationOptionsJSON (WebAuthn Level 3).",
        "required": ["challenge", "rp", "user", "pubKeyCredParams"],
        "properties": {
            "challenge": STRING,
            "rp": {"type": "object", "required": ["id", "name"]},
            "user": {"type": "object", "required": ["id", "name", "displayName"]},
            "pubKeyCredParams": {"type": "array", "minItems": 1},
            "timeout": {"type": "integer"},
            "excludeCredentials": {"type": "array"},
            "authenticatorSelection": {"type": "object"},
            "attestation": STRING,
        },
    },
    "RequestOptions": {
        "type": "object",
        "description": "PublicKeyCredentialRequestOptionsJSON (WebAuthn Level 3).",
        "required": ["challenge"],
        "properties": {
            "challenge": STRING,
            "rpId": STRING,
            "timeout": {"type": "integer"},
            "allowCredentials": {"type": "array"},
            "userVerification": STRING,
        },
    },
    "Credential": {
        "type": "object",
        "description": "RegistrationResponseJSON or AuthenticationResponseJSON.",
        "required": ["id", "rawId", "response", "type"],
    },
    "Redirect": {
        "type": "object",
        "required": ["redirect"],
        "properties": {"redirect": STRING},
    },
    "RegisteredPasskey": {
        "type": "object",
        "required": ["id", "name"],
        "properties": {"id": STRING, "name": STRING},
    },
    "Alert": {
        "type": "object",
        "required": ["id", "created_at", "kind", "severity", "status", "details"],
        "properties": {
            "id": {"type": "integer"},
            "created_at": STRING,
            "updated_at": NULLABLE_STRING,
            "kind": STRING,
            "severity": {"enum": ["low", "medium", "high"]},
            "status": {"enum": ["open", "acknowledged", "escalated", "closed"]},
            "account": NULLABLE_STRING,
            "siret": NULLABLE_STRING,
            "ip": NULLABLE_STRING,
            "details": {"type": "object"},
        },
    },
    "LoginEvent": {
        "type": "object",
        "required": ["id", "created_at", "method", "outcome"],
        "properties": {
            "id": {"type": "integer"},
            "created_at": STRING,
            "account": NULLABLE_STRING,
            "username_attempt": NULLABLE_STRING,
            "siret": NULLABLE_STRING,
            "ip": NULLABLE_STRING,
            "user_agent": STRING,
            "method": STRING,
            "outcome": STRING,
            "reason": NULLABLE_STRING,
            "device_id": {"type": ["integer", "null"]},
        },
    },
    "AlertPage": _page_of("Alert"),
    "EventPage": _page_of("LoginEvent"),
    "Discovery": {
        "type": "object",
        "required": [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
        ],
    },
    "JWKS": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {"type": "object", "required": ["kty", "kid", "alg", "use"]},
            }
        },
    },
    "Introspection": {
        "type": "object",
        "required": ["active"],
        "properties": {"active": {"type": "boolean"}},
    },
    "RelatedOrigins": {
        "type": "object",
        "required": ["origins"],
        "properties": {"origins": {"type": "array", "items": STRING}},
    },
}

PATHS: dict[str, Any] = {
    "/webauthn/register/options": {
        "post": {
            "summary": "Creation options for a new passkey (logged in, recent login)",
            "parameters": CSRF,
            "requestBody": _body({"type": "object"}),
            "responses": {
                "200": _json("CreationOptions", "Creation options"),
                "400": _error("Malformed body"),
                "401": _error("Not logged in"),
                "403": _error("Re-authentication needed"),
            },
        }
    },
    "/webauthn/register/verify": {
        "post": {
            "summary": "Store the new passkey",
            "parameters": CSRF,
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["credential"],
                    "properties": {"credential": _ref("Credential"), "name": STRING},
                }
            ),
            "responses": {
                "200": _json("RegisteredPasskey", "The stored passkey"),
                "400": _error("Refused ceremony or malformed body"),
                "401": _error("Not logged in"),
                "403": _error("Authenticator model not allowed (staff policy)"),
            },
        }
    },
    "/webauthn/login/options": {
        "post": {
            "summary": "Request options (discoverable, or username-first)",
            "requestBody": _body({"type": "object", "properties": {"username": STRING}}),
            "responses": {
                "200": _json("RequestOptions", "Request options"),
                "400": _error("Malformed body"),
                "429": _error("Too many requests"),
            },
        }
    },
    "/webauthn/login/verify": {
        "post": {
            "summary": "Verify the assertion; opens a session (cookie)",
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["credential"],
                    "properties": {"credential": _ref("Credential"), "next": STRING},
                }
            ),
            "responses": {
                "200": _json("Redirect", "Logged in: where to go"),
                "400": _error("Refused ceremony or malformed body"),
                "403": _error("Account unavailable (locked, not activated, passkey under review)"),
            },
        }
    },
    "/webauthn/recovery/options": {
        "post": {
            "summary": "Creation options from a recovery or first-passkey link",
            "parameters": CSRF,
            "requestBody": _body(
                {"type": "object", "required": ["token"], "properties": {"token": STRING}}
            ),
            "responses": {
                "200": _json("CreationOptions", "Creation options"),
                "400": _error("Link no longer valid, or malformed body"),
            },
        }
    },
    "/webauthn/recovery/verify": {
        "post": {
            "summary": "Store the passkey, spend the link, open a session",
            "parameters": CSRF,
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["token", "credential"],
                    "properties": {"token": STRING, "credential": _ref("Credential")},
                }
            ),
            "responses": {
                "200": _json("Redirect", "Logged in: where to go"),
                "400": _error("Link no longer valid, refused ceremony or malformed body"),
            },
        }
    },
    "/.well-known/webauthn": {
        "get": {
            "summary": "Related origins (WebAuthn Level 3)",
            "responses": {"200": _json("RelatedOrigins", "Origins allowed to use our RP ID")},
        }
    },
    "/api/security/alerts": _security_listing(
        "Alerts, newest first (bearer token or console session)", "AlertPage", "A page of alerts"
    ),
    "/api/security/events": _security_listing(
        "Login events, newest first (bearer token or console session)",
        "EventPage",
        "A page of login events",
    ),
    "/auth/verify": {
        "get": {
            "summary": "Forward-auth for a reverse proxy",
            "responses": {
                "200": {
                    "description": "A live session; who it is in the headers",
                    "headers": {
                        name: {"schema": STRING}
                        for name in (
                            "X-Auth-User",
                            "X-Auth-Email",
                            "X-Auth-Siret",
                            "X-Auth-Certified",
                            "X-Auth-Amr",
                        )
                    },
                },
                "401": {"description": "No live session"},
            },
        }
    },
    "/.well-known/openid-configuration": {
        "get": {
            "summary": "OpenID Connect discovery",
            "responses": {"200": _json("Discovery", "Provider metadata")},
        }
    },
    "/.well-known/jwks.json": {
        "get": {
            "summary": "The id_token signing keys",
            "responses": {"200": _json("JWKS", "Public keys")},
        }
    },
    "/oauth/token": {
        "post": {
            "summary": "Token endpoint (authorization code with PKCE, refresh token)",
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {
                    "description": "Tokens",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["access_token", "token_type"],
                            }
                        }
                    },
                },
                "400": _json("OAuthError", "Invalid request or grant"),
                "401": _json("OAuthError", "Invalid client"),
            },
        }
    },
    "/oauth/userinfo": {
        "get": {
            "summary": "Claims of the access token's user",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "Claims",
                    "content": {
                        "application/json": {"schema": {"type": "object", "required": ["sub"]}}
                    },
                },
                "401": _json("OAuthError", "Missing or invalid access token"),
            },
        }
    },
    "/oauth/revoke": {
        "post": {
            "summary": "Token revocation (RFC 7009)",
            "responses": {
                "200": {"description": "Revoked (or unknown token)"},
                "400": _json("OAuthError", "Invalid request"),
                "401": _json("OAuthError", "Invalid client"),
            },
        }
    },
    "/oauth/introspect": {
        "post": {
            "summary": "Token introspection (RFC 7662)",
            "responses": {
                "200": _json("Introspection", "Whether the token is active, and its claims"),
                "400": _json("OAuthError", "Invalid request"),
                "401": _json("OAuthError", "Invalid client"),
            },
        }
    },
}


def document(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authserver",
            "version": _version(),
            "description": "JSON APIs of the passkey authentication server (issue 15). "
            "Error bodies follow the contract's form; OAuth endpoints answer RFC 6749 errors.",
        },
        "servers": [{"url": base_url}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("authserver")
    except PackageNotFoundError:
        return "0"


@bp.get("/openapi.json")
def openapi_json() -> Response:
    from authserver.web import settings

    response = jsonify(document(settings().base_url))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def init_app(app: Any) -> None:
    app.register_blueprint(bp)
