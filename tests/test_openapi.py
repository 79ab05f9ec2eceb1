"""``/openapi.json`` (issue 15) against the real answers: every documented operation is
called on the app, and every answer's status must be documented and its JSON body valid for
that status's schema (JSON Schema 2020-12, as OpenAPI 3.1 uses)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from authserver import openapi, settings_of
from authserver.alerts.console import api_tokens
from authserver.db import get_database
from authserver.models import User
from tests.alerts.console_helpers import add_user, client_as
from tests.conftest import csrf_of
from tests.sessions.oidc_support import (
    authorize,
    exchange,
    logged_in_actions,
    register,
)
from tests.softauthn import SoftAuthenticator

SPEC = openapi.document("http://localhost")


class Checker:
    def __init__(self) -> None:
        self.called: set[tuple[str, str]] = set()

    def __call__(self, response: Any, method: str, path: str) -> Any:
        operation = SPEC["paths"][path][method]
        status = str(response.status_code)
        assert status in operation["responses"], (
            f"{method.upper()} {path} answered {status}, not documented: "
            f"{response.get_data(as_text=True)[:200]}"
        )
        self.called.add((method, path))
        documented = operation["responses"][status]
        content = documented.get("content", {}).get("application/json")
        if content is not None:
            assert response.mimetype == "application/json", (path, response.mimetype)
            schema = {**content["schema"], "components": SPEC["components"]}
            Draft202012Validator(schema).validate(response.get_json())
        for header in documented.get("headers", {}):
            assert header in response.headers, (path, header)
        return response


def test_the_document_is_served_and_valid(app) -> None:
    served = app.test_client().get("/openapi.json")
    assert served.status_code == 200
    body = served.get_json()
    assert body["openapi"] == "3.1.0" and body["paths"].keys() == SPEC["paths"].keys()
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    assert set(SPEC["paths"]) <= routes  # nothing documented that does not exist
    for schema in SPEC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_operation_answers_as_documented(app, smtp, actions) -> None:
    check = Checker()
    settings = settings_of(app)

    # --- passkeys
    anonymous = app.test_client()
    token = csrf_of(anonymous.get("/login").get_data(as_text=True))
    headers = {"X-CSRFToken": token}
    check(
        anonymous.post("/webauthn/register/options", json={}, headers=headers),
        "post",
        "/webauthn/register/options",
    )
    check(
        anonymous.post("/webauthn/register/verify", json={"credential": {}}, headers=headers),
        "post",
        "/webauthn/register/verify",
    )
    add_user(app, "api.employeur")
    employer = client_as(app, smtp, "api.employeur", passkey=False)
    page_token = csrf_of(employer.get("/account/passkeys").get_data(as_text=True))
    auth = SoftAuthenticator(rp_id=settings.rp_id, origin=settings.origins[0])
    options = check(
        employer.post("/webauthn/register/options", json={}, headers={"X-CSRFToken": page_token}),
        "post",
        "/webauthn/register/options",
    )
    check(
        employer.post(
            "/webauthn/register/verify",
            json={"credential": auth.register(options.get_json())},
            headers={"X-CSRFToken": page_token},
        ),
        "post",
        "/webauthn/register/verify",
    )
    browser = app.test_client()
    request_options = check(
        browser.post("/webauthn/login/options", json={}), "post", "/webauthn/login/options"
    )
    check(
        browser.post(
            "/webauthn/login/options", data="pas du json", content_type="application/json"
        ),
        "post",
        "/webauthn/login/options",
    )
    check(
        browser.post("/webauthn/login/verify", json={"credential": {"id": "x"}}),
        "post",
        "/webauthn/login/verify",
    )
    browser = app.test_client()
    request_options = check(
        browser.post("/webauthn/login/options", json={}), "post", "/webauthn/login/options"
    )
    check(
        browser.post(
            "/webauthn/login/verify", json={"credential": auth.assert_(request_options.get_json())}
        ),
        "post",
        "/webauthn/login/verify",
    )
    for path in ("/webauthn/recovery/options", "/webauthn/recovery/verify"):
        check(
            anonymous.post(path, json={"token": "inconnu", "credential": {}}, headers=headers),
            "post",
            path,
        )
    check(anonymous.get("/.well-known/webauthn"), "get", "/.well-known/webauthn")

    # --- forward-auth
    check(anonymous.get("/auth/verify"), "get", "/auth/verify")
    check(browser.get("/auth/verify"), "get", "/auth/verify")

    # --- the security API
    add_user(app, "api.securite", role="security")
    with app.app_context():
        from authserver import db

        session = db.session()
        agent = session.query(User).filter_by(username="api.securite").one()
        bearer = api_tokens.create(session, user=agent, name="siem")
        session.commit()
    auth_header = {"Authorization": f"Bearer {bearer}"}
    for path in ("/api/security/alerts", "/api/security/events"):
        check(anonymous.get(path, headers=auth_header), "get", path)
        check(anonymous.get(path, headers=auth_header, query_string={"limit": "0"}), "get", path)
        check(anonymous.get(path), "get", path)
        check(employer.get(path), "get", path)

    # --- OpenID Connect
    check(
        anonymous.get("/.well-known/openid-configuration"),
        "get",
        "/.well-known/openid-configuration",
    )
    check(anonymous.get("/.well-known/jwks.json"), "get", "/.well-known/jwks.json")
    kit = register(app, first_party=True)
    user = logged_in_actions(actions)
    flow = authorize(user.client, kit)
    answer = check(exchange(user.client, flow), "post", "/oauth/token")
    check(exchange(user.client, flow), "post", "/oauth/token")  # the code again: refused
    check(anonymous.post("/oauth/token", data={"grant_type": "password"}), "post", "/oauth/token")
    access = answer.get_json()["access_token"]
    check(
        user.client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {access}"}),
        "get",
        "/oauth/userinfo",
    )
    check(anonymous.get("/oauth/userinfo"), "get", "/oauth/userinfo")
    check(
        anonymous.post("/oauth/introspect", data={"token": access}, headers=kit.basic),
        "post",
        "/oauth/introspect",
    )
    check(anonymous.post("/oauth/introspect", data={"token": access}), "post", "/oauth/introspect")
    check(
        anonymous.post("/oauth/revoke", data={"token": access}, headers=kit.basic),
        "post",
        "/oauth/revoke",
    )
    check(anonymous.post("/oauth/revoke", data={"token": access}), "post", "/oauth/revoke")

    documented = {(m, p) for p, ops in SPEC["paths"].items() for m in ops}
    assert documented - check.called == set()
    get_database(app).dispose()


@pytest.mark.parametrize("status", ["400", "401"])
def test_an_undocumented_answer_fails_the_check(status) -> None:
    """The checker itself: an answer whose status the document lacks is a failure."""

    class Fake:
        status_code = int(status)
        mimetype = "application/json"

        def get_json(self) -> dict:
            return {"error": "x", "message": "y"}

        def get_data(self, as_text: bool = False) -> str:
            return ""

    with pytest.raises(AssertionError):
        Checker()(Fake(), "get", "/.well-known/jwks.json")
