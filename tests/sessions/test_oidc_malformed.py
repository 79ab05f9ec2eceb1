"""Malformed requests to the OpenID Connect endpoints get the protocol's error, never a 500
(security review, issue 11): unreadable HTTP Basic credentials, odd or repeated authorization
parameters, percent-escapes that are not UTF-8, values the database cannot store."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.conftest import Actions
from tests.sessions.oidc_support import (
    REDIRECT,
    authorize,
    logged_in_actions,
    pkce,
    register,
    tokens,
)

ENDPOINTS = ["/oauth/token", "/oauth/revoke", "/oauth/introspect"]


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def user(actions):
    return logged_in_actions(actions)


@pytest.fixture
def kit(app):
    return register(app, first_party=True)


# --------------------------------------------------------------------------- HTTP Basic


def bad_basic_headers(client_id: str) -> dict[str, str]:
    return {
        "not UTF-8": basic(b"\xff\xfe:\xff"),
        "secret not UTF-8": basic(client_id.encode() + b":\xff"),
        "no colon": basic(client_id.encode()),
        "not base64": "Basic !!!not-base64!!!",
        "bad padding": "Basic YWJj=",
        "non-ASCII header": "Basic \xe9t\xe9",
        "empty": "Basic ",
        "scheme only": "Basic",
        "escape not UTF-8": basic(client_id.encode() + b":%ff"),
        "NUL in client_id": basic(b"a%00b:secret"),
        "NUL in raw client_id": basic(b"a\x00b:secret"),
        "long client_id": basic(b"a" * 5000 + b":secret"),
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unreadable_basic_credentials_are_invalid_client(backend_app, smtp, endpoint):
    user = logged_in_actions(Actions(backend_app.test_client(), smtp))
    kit = register(backend_app, first_party=True)
    answer = tokens(user.client, kit)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": answer["refresh_token"],
        "token": answer["access_token"],
    }
    for name, header in bad_basic_headers(kit.client_id).items():
        reply = user.client.post(endpoint, data=form, headers={"Authorization": header})
        assert reply.status_code == 401, (name, reply.status_code)
        body = reply.get_json()
        assert body["error"] == "invalid_client", name
        assert body["message"] == "Le service n'a pas pu être authentifié.", name
        assert reply.headers["WWW-Authenticate"].startswith("Basic "), name
    # The credentials themselves still work.
    assert user.client.post(endpoint, data=form, headers=kit.basic).status_code == 200


def test_a_garbled_basic_header_is_not_bypassed_by_a_public_client_id(app, user):
    """A client that tried HTTP Basic gets 401 even when the body names a public client."""
    spa = register(app, name="SPA", public=True, redirect_uris=["http://localhost:3000/cb"])
    reply = user.client.post(
        "/oauth/revoke",
        data={"token": "x", "client_id": spa.client_id},
        headers={"Authorization": basic(b"\xff:\xff")},
    )
    assert reply.status_code == 401 and reply.get_json()["error"] == "invalid_client"


# --------------------------------------------------------------------------- /oauth/authorize


def raw_authorize(http, query: str):
    return http.get("/oauth/authorize?" + query)


def valid_query(kit, **replace: str) -> str:
    """A complete authorization request as a raw query string; ``replace`` values are put in
    as given (already escaped)."""
    _verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": kit.client_id,
        "redirect_uri": quote(kit.redirect_uri, safe=""),
        "scope": "openid",
        "state": "etat",
        "nonce": "n-0S6",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(replace)
    return "&".join(f"{key}={value}" for key, value in params.items() if value is not None)


def redirected_error(reply) -> dict[str, str]:
    location = reply.headers.get("Location", "")
    assert location.startswith(REDIRECT + "?"), (reply.status_code, location)
    return {key: value[0] for key, value in parse_qs(urlsplit(location).query).items()}


@pytest.mark.parametrize(
    "value",
    ["%22", "%ff", "%C3%A9", "code%20token", "token", "id_token", "%5C", "%00", "", "code%0A"],
)
def test_an_odd_response_type_goes_back_to_the_client(user, kit, value):
    reply = raw_authorize(user.client, valid_query(kit, response_type=value))
    query = redirected_error(reply)
    assert query["error"] == "unsupported_response_type"
    assert query["state"] == "etat"


@pytest.mark.parametrize("value", ["%22", "%ff", "%C3%A9", "code", ""])
def test_an_odd_response_type_without_a_valid_client_is_a_page(client, value):
    for query in (f"response_type={value}", f"response_type={value}&client_id=nope"):
        reply = raw_authorize(client, query)
        assert reply.status_code == 400, query
        assert "Location" not in reply.headers
        assert "Cette demande de connexion" in reply.get_data(as_text=True)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https%3A%2F%2Fcsp.example.fr%2Fcallback%22",
        "https%3A%2F%2Fcsp.example.fr%2F%ff",
        "https%3A%2F%2Fcsp.example.fr%2Fcallback%C3%A9",
        "https%3A%2F%2Fevil.example%2F%5C%22%00",
        "%ff",
        "",
    ],
)
def test_an_odd_redirect_uri_is_a_page_never_a_redirect(user, kit, redirect_uri):
    reply = raw_authorize(user.client, valid_query(kit, redirect_uri=redirect_uri))
    assert reply.status_code == 400
    assert "Location" not in reply.headers


@pytest.mark.parametrize(
    "repeated, answer",
    [
        ("response_type", "page"),  # client_id and redirect_uri: not trusted enough to
        ("client_id", "page"),  # redirect (Authlib's own check, before the client is known)
        ("redirect_uri", "page"),
        ("scope", "page"),
        ("state", "page"),
        ("nonce", "invalid_request"),  # were taken silently (the first one)
        ("code_challenge", "invalid_request"),
        ("prompt", "invalid_request"),
        ("max_age", "invalid_request"),
    ],
)
def test_repeated_parameters_are_refused(user, kit, repeated, answer):
    reply = raw_authorize(user.client, valid_query(kit) + f"&{repeated}=1&{repeated}=1")
    if answer == "page":
        assert reply.status_code == 400 and "Location" not in reply.headers
    else:
        assert redirected_error(reply)["error"] == answer


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("nonce", "%00", "invalid_request"),  # PostgreSQL: a 500 before
        ("nonce", "a" * 256, "invalid_request"),  # its column: a 500 on PostgreSQL before
        ("nonce", "a" * 255, "code"),
        ("nonce", "%ff%fe", "code"),  # werkzeug keeps an escape that is not UTF-8 as text
        ("nonce", "%C3%A9t%C3%A9", "code"),
        ("state", "%00", "invalid_request"),
        ("state", "%C3%A9t%C3%A9%22", "code"),
        ("scope", "openid%00", "invalid_request"),
        ("scope", "%ff", "invalid_scope"),
        ("scope", "openid%20%C3%A9", "invalid_scope"),
        ("prompt", "%ff", "code"),
        ("max_age", "%C3%A9", "invalid_request"),
        ("acr_values", "%ff%00", "invalid_request"),
        ("code_challenge_method", "%C3%A9", "invalid_request"),
        ("code_challenge", "%ff" * 50, "invalid_request"),
        ("login_hint", "%00", "invalid_request"),
        ("ui_locales", "%ff%C3%A9", "code"),
        ("%00", "x", "invalid_request"),
        ("client_id", "%00", "page"),  # PostgreSQL: a 500 before
        ("client_id", "%ff", "page"),
        ("client_id", "%C3%A9", "page"),
        ("client_id", "a" * 5000, "page"),
    ],
)
def test_odd_parameter_values_get_an_oauth_error(backend_app, smtp, name, value, expected):
    user = logged_in_actions(Actions(backend_app.test_client(), smtp))
    kit = register(backend_app, first_party=True)
    reply = raw_authorize(user.client, valid_query(kit, **{name: value}))
    if expected == "page":
        assert reply.status_code == 400 and "Location" not in reply.headers
        return
    query = redirected_error(reply)
    assert query.get("error", "code" if "code" in query else None) == expected
    assert query["state"] == ("etat" if name != "state" else query["state"])


# --------------------------------------------------------------------------- every endpoint


def sweep(http, kit) -> dict[tuple[str, str], int]:
    """Malformed requests to every /oauth/* and /.well-known/* endpoint: their statuses."""
    form = "application/x-www-form-urlencoded"
    cases: list[tuple[str, str, dict]] = []
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/userinfo"):
        for body in (
            b"grant_type=%ff&client_id=%ff&code=%00&token=%ff",
            b"grant_type=authorization_code&grant_type=refresh_token&code=a&code=b",
            f"grant_type=authorization_code&client_id={kit.client_id}&client_id=x".encode(),
            b"grant_type=refresh_token&refresh_token=%00&token_type_hint=%ff&token=%00",
            b"grant_type=authorization_code&code=x&code_verifier=%ff&redirect_uri=%ff",
            b"access_token=%ff%00",
            b"%ff=%ff&=&&&=x",
        ):
            cases.append(("POST", path, {"data": body, "content_type": form}))
        cases.append(("POST", path, {"data": b'{"token": 1}', "content_type": "application/json"}))
        cases.append(("POST", path, {"data": b"\xff\xfe", "content_type": "text/plain"}))
        cases.append(("POST", path + "?client_id=%ff&token=%00", {}))
    for header in ("Bearer \xe9", "Bearer", "Bearer a b", "Basic %ff", "Negotiate x" * 3):
        cases.append(("GET", "/oauth/userinfo", {"headers": {"Authorization": header}}))
    cases.append(("GET", "/oauth/userinfo?access_token=%ff%00", {}))
    for query in (
        "id_token_hint=%ff",
        "id_token_hint=a.b.c",
        "id_token_hint=%00.%00.%00",
        "post_logout_redirect_uri=%ff",
        "post_logout_redirect_uri=https%3A%2F%2Fx&client_id=%00",
        f"post_logout_redirect_uri=https%3A%2F%2Fx%22&client_id={kit.client_id}",
        f"client_id={kit.client_id}&client_id=x&state=%ff",
        "id_token_hint=x&id_token_hint=y",
        "ui_locales=%ff&logout_hint=%00",
    ):
        cases.append(("GET", "/oauth/logout?" + query, {}))
        cases.append(("POST", "/oauth/logout", {"data": query.encode(), "content_type": form}))
    for path in (
        "/.well-known/openid-configuration?%ff=%00",
        "/.well-known/jwks.json?x=%ff",
        "/oauth/jwks?%ff",
        "/.well-known/%ff",
    ):
        cases.append(("GET", path, {}))
    return {
        (method, path + repr(options)[:120]): http.open(path, method=method, **options).status_code
        for method, path, options in cases
    }


def test_no_malformed_request_is_a_server_error(backend_app, smtp):
    user = logged_in_actions(Actions(backend_app.test_client(), smtp))
    kit = register(backend_app, first_party=True)
    statuses = sweep(user.client, kit)
    assert {case: status for case, status in statuses.items() if status >= 500} == {}


def test_the_flow_still_works_with_basic_credentials(user, kit):
    assert tokens(user.client, kit)["access_token"]
    flow = authorize(user.client, kit)
    assert flow.code
