"""OpenID Connect provider over HTTP: discovery, the code flow with PKCE, claims, and the
requests the RFCs say must fail (wrong redirect URI, PKCE, code reuse and expiry)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from authserver.db import get_database
from authserver.models import AuthSession, OAuthClient, OAuthCode, User, utcnow
from tests.conftest import csrf_of
from tests.sessions.oidc_support import (
    ISSUER,
    REDIRECT,
    USERNAME,
    Client,
    authorize,
    certify,
    exchange,
    introspect,
    jwks,
    logged_in_actions,
    register,
    tokens,
    userinfo,
    verify_jwt,
)


@pytest.fixture
def user(actions):
    return logged_in_actions(actions)


@pytest.fixture
def kit(app):
    return register(app, first_party=True)


# --------------------------------------------------------------------------- discovery


def test_discovery_names_every_endpoint(client):
    document = client.get("/.well-known/openid-configuration").get_json()
    assert document["issuer"] == ISSUER
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "revocation_endpoint",
        "introspection_endpoint",
        "end_session_endpoint",
    ):
        assert document[name].startswith(ISSUER + "/"), name
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]
    assert document["response_types_supported"] == ["code"]
    assert "portal" in document["scopes_supported"]
    assert {"siret", "establishment_name", "certified", "acr", "amr"} <= set(
        document["claims_supported"]
    )
    assert document["backchannel_logout_supported"] is True
    assert client.get(document["jwks_uri"].removeprefix(ISSUER)).status_code == 200


def test_jwks_publishes_public_es256_keys_only(client):
    document = client.get("/.well-known/jwks.json").get_json()
    assert len(document["keys"]) == 1
    key = document["keys"][0]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert key["kid"] and "d" not in key
    assert client.get("/oauth/jwks").get_json() == document


def test_private_keys_are_sealed_in_the_database(app, client):
    client.get("/.well-known/jwks.json")
    with get_database(app).engine.connect() as connection:
        sealed = connection.exec_driver_sql(
            "SELECT private_jwk_sealed FROM oidc_signing_keys"
        ).scalar_one()
    assert b'"d"' not in sealed and b"P-256" not in sealed


# --------------------------------------------------------------------------- the code flow


def test_code_flow_with_pkce_gives_a_verifiable_id_token(app, user, kit):
    certify(app)
    answer = tokens(user.client, kit)
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 600
    assert answer["refresh_token"]
    claims = verify_jwt(answer["id_token"], jwks(user.client), audience=kit.client_id)
    flow = answer["_flow"]
    with get_database(app).session_scope() as session:
        account = session.scalar(select(User).where(User.username == USERNAME))
        record = session.scalar(select(AuthSession).where(AuthSession.user_id == account.id))
        public_id, authenticated_at = account.public_id, record.authenticated_at
    assert claims["sub"] == public_id and claims["sub"] != USERNAME
    assert claims["nonce"] == flow.params["nonce"]
    assert claims["auth_time"] == int(authenticated_at.timestamp())
    assert claims["amr"] == ["pwd"]
    assert claims["acr"] == "urn:authserver:pwd"
    assert claims["sid"] and claims["at_hash"]
    assert claims["name"] == "Martin Dupont"
    assert claims["email"] == "martin.dupont@entreprise.fr"
    assert claims["phone_number"]
    assert claims["siret"] == "73282932000074"
    assert claims["establishment_name"] == "Boulangerie Dupont"
    assert claims["certified"] is True
    assert flow.query["state"] == flow.params["state"]


def test_userinfo_follows_the_scopes(user, kit):
    answer = tokens(user.client, kit, scope="openid email")
    info = userinfo(user.client, answer["access_token"])
    assert info.status_code == 200
    body = info.get_json()
    assert set(body) == {"sub", "email", "email_verified"}
    assert userinfo(user.client, "not-a-token").status_code == 401


def test_portal_claims_for_an_uncertified_account(user, kit):
    answer = tokens(user.client, kit, scope="openid portal")
    body = userinfo(user.client, answer["access_token"]).get_json()
    assert body["certified"] is False and body["siret"] is None


def test_introspection_of_an_active_token(user, kit):
    answer = tokens(user.client, kit)
    found = introspect(user.client, kit, answer["access_token"])
    assert found["active"] is True
    assert found["client_id"] == kit.client_id
    assert found["scope"] == "openid profile email phone portal"
    assert found["exp"] > found["iat"]
    assert found["amr"] == ["pwd"]
    assert found["username"] == USERNAME  # a first-party resource server of the portal
    assert introspect(user.client, kit, "unknown")["active"] is False


def test_the_identifiant_is_never_given_to_a_third_party(app, user):
    """The consent page says « sans votre identifiant de connexion »: no preferred_username
    in the id_token or userinfo, no username in a third-party service's introspection."""
    third = register(app, name="Logiciel de paie", scope="openid profile email")
    flow = authorize(user.client, third, scope="openid profile email")
    body = flow.response.get_data(as_text=True)
    assert "sans votre identifiant de connexion" in body
    # How long the authorization lasts, and how to withdraw it (ASVS 10.7.2).
    assert (
        "jusqu&#39;à ce que vous la retiriez" in body or "jusqu'à ce que vous la retiriez" in body
    )
    assert "12 heures après votre connexion" in body
    action = "/oauth/authorize?" + urlsplit(flow.response.request.url).query
    allowed = user.client.post(action, data={"csrf_token": csrf_of(body), "decision": "allow"})
    code = parse_qs(urlsplit(allowed.headers["Location"]).query)["code"][0]
    answer = exchange(user.client, flow, code=code).get_json()
    claims = verify_jwt(answer["id_token"], jwks(user.client), audience=third.client_id)
    info = userinfo(user.client, answer["access_token"]).get_json()
    found = introspect(user.client, third, answer["access_token"])
    assert found["active"] is True
    for document in (claims, info, found):
        assert USERNAME not in document.values(), document
        assert not {"preferred_username", "username"} & set(document)
    assert info["name"] == "Martin Dupont"
    assert (
        "preferred_username"
        not in user.client.get("/.well-known/openid-configuration").get_json()["claims_supported"]
    )


def test_oauth_errors_carry_the_rfc_code_and_a_french_message(client, kit):
    answer = client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x"})
    assert answer.status_code in (400, 401)
    body = answer.get_json()
    assert body["error"] == "invalid_client" and body["message"]


def test_unknown_grant_type(client, kit):
    answer = client.post("/oauth/token", data={"grant_type": "password"}, headers=kit.basic)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "unsupported_grant_type"


def test_client_secret_is_stored_hashed_and_checked(app, user, kit):
    with get_database(app).session_scope() as session:
        row = session.scalar(select(OAuthClient).where(OAuthClient.client_id == kit.client_id))
        assert kit.secret.encode() not in (row.secret_hash or b"")
        assert len(row.secret_hash) == 32
    flow = authorize(user.client, kit)
    wrong = kit.__class__(kit.client_id, "wrong-secret")
    flow.client = wrong
    answer = exchange(user.client, flow)
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "invalid_client"


# --------------------------------------------------------------------------- bad requests


def test_wrong_redirect_uri_is_never_redirected_to(user, kit):
    flow = authorize(user.client, kit, redirect_uri="https://evil.example/cb")
    assert flow.response.status_code == 400
    assert "Location" not in flow.response.headers
    assert "Cette demande de connexion" in flow.response.get_data(as_text=True)


def test_unknown_client_is_never_redirected_to(user):
    from tests.sessions.oidc_support import Client

    flow = authorize(user.client, Client("nope", "x"))
    assert flow.response.status_code == 400
    assert "Location" not in flow.response.headers


def test_other_errors_go_back_to_the_registered_uri(user, kit):
    flow = authorize(user.client, kit, response_type="token")
    assert flow.location.startswith(REDIRECT)
    assert flow.query["error"] == "unsupported_response_type"
    assert flow.query["state"] == flow.params["state"]


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_every_client_must_use_pkce(app, user, public):
    """OAuth 2.1 / ASVS 10.4.6: PKCE for every client, not only those without a secret."""
    service = register(app, public=public, first_party=True)
    flow = authorize(user.client, service, pkce_method=None)
    assert flow.query["error"] == "invalid_request"
    assert flow.query["state"] == flow.params["state"]
    assert "Location" in flow.response.headers and flow.location.startswith(REDIRECT)


@pytest.mark.parametrize("method", ["plain", ""])
def test_only_s256(user, kit, method):
    flow = authorize(user.client, kit, pkce_method=method or None)
    if method == "":  # challenge without a method: plain by default, refused
        flow = authorize(user.client, kit, code_challenge_method=None)
    assert flow.query["error"] == "invalid_request"


def test_public_client_flow_without_secret(app, user):
    public = register(app, public=True, first_party=True)
    answer = tokens(user.client, public)
    assert verify_jwt(answer["id_token"], jwks(user.client), audience=public.client_id)


@pytest.mark.parametrize(
    "verifier, error",
    [
        (None, "invalid_request"),  # missing
        ("x" * 50, "invalid_grant"),  # wrong
        ("short", "invalid_request"),  # malformed
    ],
)
def test_pkce_verifier_missing_or_wrong(app, user, verifier, error):
    public = register(app, public=True, first_party=True)
    flow = authorize(user.client, public)
    answer = exchange(user.client, flow, code_verifier=verifier)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == error


def test_confidential_client_with_pkce_needs_the_verifier_too(user, kit):
    flow = authorize(user.client, kit)
    answer = exchange(user.client, flow, code_verifier=None)
    assert answer.status_code == 400


@pytest.mark.parametrize("verifier", [None, "x" * 50])
def test_a_code_without_a_challenge_gives_no_token(app, user, kit, verifier):
    """A code stored without a challenge (issued before PKCE was required of every client)
    is refused at the token endpoint, with or without a verifier."""
    flow = authorize(user.client, kit)
    code = flow.code
    with get_database(app).session_scope() as session:
        session.execute(update(OAuthCode).values(code_challenge=None, code_challenge_method=None))
    answer = exchange(user.client, flow, code=code, code_verifier=verifier)
    assert answer.status_code == 400
    assert answer.get_json()["error"] in ("invalid_request", "invalid_grant")


def test_redirect_uri_must_match_at_the_token_endpoint(app, user):
    two = register(app, first_party=True, redirect_uris=[REDIRECT, REDIRECT + "2"])
    flow = authorize(user.client, two)
    answer = exchange(user.client, flow, redirect_uri=REDIRECT + "2")
    assert answer.get_json()["error"] == "invalid_grant"


def test_code_of_another_client_is_refused(app, user, kit):
    other = register(app, first_party=True, name="Autre")
    flow = authorize(user.client, kit)
    flow.client = other
    assert exchange(user.client, flow).get_json()["error"] == "invalid_grant"


def test_reused_code_is_refused_and_revokes_what_it_issued(user, kit):
    flow = authorize(user.client, kit)
    first = exchange(user.client, flow)
    assert first.status_code == 200
    issued = first.get_json()
    again = exchange(user.client, flow, code=flow.code)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    assert introspect(user.client, kit, issued["access_token"])["active"] is False
    assert userinfo(user.client, issued["access_token"]).status_code == 401
    from tests.sessions.oidc_support import refresh

    assert refresh(user.client, kit, issued["refresh_token"]).status_code == 400


def test_expired_code_is_refused(app, user, kit):
    flow = authorize(user.client, kit)
    code = flow.code
    with get_database(app).session_scope() as session:
        session.execute(update(OAuthCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    answer = exchange(user.client, flow, code=code)
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_grant"


def test_code_lifetime_counts_from_its_issue_not_from_the_login(app, user, kit):
    """An hour-old login still gets a working code (auth_time is the login, not the code)."""
    with get_database(app).session_scope() as session:
        session.execute(update(AuthSession).values(authenticated_at=utcnow() - timedelta(hours=1)))
    answer = tokens(user.client, kit)
    claims = verify_jwt(answer["id_token"], jwks(user.client), audience=kit.client_id)
    assert claims["auth_time"] < claims["iat"] - 3500
    with get_database(app).session_scope() as session:
        code = session.scalar(select(OAuthCode))
        assert timedelta(seconds=60) <= code.expires_at - code.issued_at <= timedelta(minutes=5)


def test_nonce_cannot_be_replayed(user, kit):
    first = authorize(user.client, kit, nonce="same-nonce")
    assert first.code
    second = authorize(user.client, kit, nonce="same-nonce")
    assert second.query["error"] == "invalid_request"


def test_scope_outside_the_clients_is_dropped(app, user):
    narrow = register(app, first_party=True, scope="openid email")
    answer = tokens(user.client, narrow, scope="openid email portal")
    assert answer["scope"] == "openid email"


def test_redirect_after_one_of_our_forms_is_a_page_not_a_302(user, kit):
    """CSP form-action 'self' would block a form's redirect chain that leaves the origin."""
    flow = authorize(user.client, kit)
    assert flow.response.status_code == 302
    from tests.sessions.oidc_support import pkce

    _verifier, challenge = pkce()
    answer = user.client.get(
        "/oauth/authorize",
        query_string={
            "response_type": "code",
            "client_id": kit.client_id,
            "redirect_uri": kit.redirect_uri,
            "scope": "openid",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"},
    )
    assert answer.status_code == 200
    assert answer.headers["Refresh"].startswith("0; url=" + kit.redirect_uri + "?code=")
    assert 'id="continue"' in answer.get_data(as_text=True)


def test_public_clients_in_a_browser_may_call_token_and_userinfo(client):
    preflight = client.options(
        "/oauth/userinfo",
        headers={
            "Origin": "https://spa.example",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    answer = client.post("/oauth/token", data={"grant_type": "authorization_code"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in client.get("/login").headers


# --------------------------------------------------------------------------- RFC 7662 access


def test_introspection_needs_client_authentication(app, user, kit):
    answer = tokens(user.client, kit)
    token = {"token": answer["access_token"]}
    anonymous = user.client.post("/oauth/introspect", data=token)
    assert anonymous.status_code == 401 and anonymous.get_json()["error"] == "invalid_client"
    wrong = Client(kit.client_id, "pas-le-bon-secret")
    refused = user.client.post("/oauth/introspect", data=token, headers=wrong.basic)
    assert refused.status_code == 401
    # A public client has nothing to authenticate with: it cannot introspect at all.
    spa = register(app, name="SPA", public=True, redirect_uris=["http://localhost:3000/cb"])
    public = user.client.post("/oauth/introspect", data={**token, "client_id": spa.client_id})
    assert public.status_code == 401 and "active" not in public.get_json()


def test_a_third_party_service_cannot_introspect_another_services_token(app, user, kit):
    answer = tokens(user.client, kit)
    third = register(app, name="Logiciel de paie")
    for token in (answer["access_token"], answer["refresh_token"]):
        assert introspect(user.client, third, token) == {"active": False}
    # The token's own service, and the portal's first-party resource servers, may.
    assert introspect(user.client, kit, answer["access_token"])["active"] is True
    portal_api = register(app, first_party=True, name="API du portail")
    assert introspect(user.client, portal_api, answer["access_token"])["active"] is True
