"""Tokens over time: refresh rotation and reuse, revocation (RFC 7009), sessions that end,
key rotation, re-authentication (prompt, max_age), consent, step-up to a passkey, logout."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
from sqlalchemy import select, update

from authserver import settings_of
from authserver.db import get_database
from authserver.models import (
    AuthSession,
    BackchannelLogout,
    OAuthConsent,
    OIDCSigningKey,
    User,
    utcnow,
)
from authserver.sessions import store
from authserver.sessions.oidc import keys, policy
from tests.conftest import Actions, csrf_of
from tests.sessions.oidc_support import (
    USERNAME,
    Client,
    authorize,
    exchange,
    introspect,
    jwks,
    logged_in_actions,
    refresh,
    register,
    tokens,
    userinfo,
    verify_jwt,
)

OTHER_REDIRECT = "https://b.example.fr/callback"


@pytest.fixture
def user(actions):
    return logged_in_actions(actions)


@pytest.fixture
def kit(app):
    return register(app, first_party=True, post_logout_redirect_uris=["https://csp.example.fr/bye"])


def verify_status(http) -> int:
    return http.get("/auth/verify").status_code


# --------------------------------------------------------------------------- refresh


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family(user, kit):
    first = tokens(user.client, kit)
    second = refresh(user.client, kit, first["refresh_token"])
    assert second.status_code == 200, second.get_data(as_text=True)
    rotated = second.get_json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert userinfo(user.client, rotated["access_token"]).status_code == 200

    reuse = refresh(user.client, kit, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    # The whole family is gone: the rotated refresh token and its access token too.
    assert refresh(user.client, kit, rotated["refresh_token"]).status_code == 400
    assert introspect(user.client, kit, rotated["access_token"])["active"] is False
    assert userinfo(user.client, rotated["access_token"]).status_code == 401
    # Another login's tokens are untouched.
    other = tokens(user.client, kit)
    assert introspect(user.client, kit, other["access_token"])["active"] is True


def test_refresh_token_of_another_client_is_refused(app, user, kit):
    other = register(app, first_party=True, name="Autre")
    first = tokens(user.client, kit)
    assert refresh(user.client, other, first["refresh_token"]).status_code == 400


def refresh_with(http, client, refresh_token: str, **extra: str):
    headers, auth = client.auth()
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **auth, **extra}
    return http.post("/oauth/token", data=data, headers=headers)


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("wider_scope", "invalid_scope"),
        ("another_client", "invalid_grant"),
        ("wrong_secret", "invalid_client"),
    ],
)
def test_a_refused_refresh_does_not_use_up_the_refresh_token(app, user, kit, how, error):
    first = tokens(user.client, kit, scope="openid email")
    if how == "wider_scope":
        answer = refresh_with(user.client, kit, first["refresh_token"], scope="openid email phone")
    elif how == "another_client":
        answer = refresh(user.client, register(app, name="Autre"), first["refresh_token"])
    else:
        wrong = Client(kit.client_id, "pas-le-bon-secret", kit.redirect_uri)
        answer = refresh(user.client, wrong, first["refresh_token"])
    assert answer.status_code in (400, 401) and answer.get_json()["error"] == error
    # The token is still unspent: a correct retry rotates it, and nothing was revoked.
    retry = refresh(user.client, kit, first["refresh_token"])
    assert retry.status_code == 200, retry.get_data(as_text=True)
    assert introspect(user.client, kit, retry.get_json()["access_token"])["active"] is True


def test_a_narrower_scope_on_refresh_is_granted(user, kit):
    first = tokens(user.client, kit, scope="openid email")
    answer = refresh_with(user.client, kit, first["refresh_token"], scope="openid")
    assert answer.status_code == 200 and answer.get_json()["scope"] == "openid"


def test_refresh_keeps_scope_and_authentication_facts(user, kit):
    first = tokens(user.client, kit, scope="openid email")
    rotated = refresh(user.client, kit, first["refresh_token"]).get_json()
    assert rotated["scope"] == "openid email"
    found = introspect(user.client, kit, rotated["access_token"])
    assert found["amr"] == ["pwd"] and found["acr"] == "urn:authserver:pwd"


# --------------------------------------------------------------------------- RFC 7009


def test_revoking_an_access_token(user, kit):
    issued = tokens(user.client, kit)
    answer = user.client.post(
        "/oauth/revoke",
        data={"token": issued["access_token"], "token_type_hint": "access_token"},
        headers=kit.basic,
    )
    assert answer.status_code == 200
    assert introspect(user.client, kit, issued["access_token"])["active"] is False
    # RFC 7009: unknown tokens are answered 200 too.
    assert (
        user.client.post("/oauth/revoke", data={"token": "nope"}, headers=kit.basic).status_code
        == 200
    )


def test_revoking_a_refresh_token_ends_the_grant(user, kit):
    issued = tokens(user.client, kit)
    user.client.post("/oauth/revoke", data={"token": issued["refresh_token"]}, headers=kit.basic)
    assert refresh(user.client, kit, issued["refresh_token"]).status_code == 400
    assert introspect(user.client, kit, issued["access_token"])["active"] is False


def test_revocation_needs_client_authentication(user, kit):
    issued = tokens(user.client, kit)
    answer = user.client.post("/oauth/revoke", data={"token": issued["access_token"]})
    assert answer.status_code in (400, 401)
    assert introspect(user.client, kit, issued["access_token"])["active"] is True


# --------------------------------------------------------------------------- sessions ending


def _session_ids(app, username: str = USERNAME) -> list[bytes]:
    with get_database(app).session_scope() as session:
        user_id = session.scalar(select(User.id).where(User.username == username))
        return list(
            session.scalars(
                select(AuthSession.token_hash).where(
                    AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
                )
            )
        )


@pytest.mark.parametrize("how", ["logout", "revoke_all", "idle"])
def test_a_session_that_ends_ends_its_tokens(app, user, kit, how):
    issued = tokens(user.client, kit)
    assert verify_status(user.client) == 200
    if how == "logout":
        page = user.client.get("/account/sessions").get_data(as_text=True)
        user.client.post("/logout", data={"csrf_token": csrf_of(page)})
    elif how == "revoke_all":  # password reset, « ce n'était pas moi », security team
        with app.app_context(), get_database(app).session_scope() as session:
            user_id = session.scalar(select(User.id).where(User.username == USERNAME))
            assert store.revoke_all(session, user_id, "security_console") == 1
    else:
        idle = settings_of(app).session_idle
        with get_database(app).session_scope() as session:
            session.execute(
                update(AuthSession).values(last_seen_at=utcnow() - timedelta(seconds=idle + 1))
            )
    assert introspect(user.client, kit, issued["access_token"])["active"] is False
    assert introspect(user.client, kit, issued["refresh_token"])["active"] is False
    assert userinfo(user.client, issued["access_token"]).status_code == 401
    assert refresh(user.client, kit, issued["refresh_token"]).status_code == 400
    assert verify_status(user.client) == 401


def test_locked_account_tokens_are_inactive(app, user, kit):
    issued = tokens(user.client, kit)
    with get_database(app).session_scope() as session:
        session.execute(update(User).values(locked_at=utcnow()))
    assert introspect(user.client, kit, issued["access_token"])["active"] is False
    assert verify_status(user.client) == 401


# --------------------------------------------------------------------------- keys


def _let_the_next_key_sign(app) -> None:
    """PUBLISH_AHEAD goes by: every key's signing instant moves that far into the past."""
    with get_database(app).session_scope() as session:
        for row in session.scalars(select(OIDCSigningKey)):
            row.signs_from -= keys.PUBLISH_AHEAD + timedelta(seconds=1)


def test_key_rotation_publishes_first_and_keeps_old_tokens_verifiable_until_retired(app, user, kit):
    before = tokens(user.client, kit)
    cached = jwks(user.client)  # what a service holds for max-age seconds
    verify_jwt(before["id_token"], cached, audience=kit.client_id)
    old_kid = pyjwt.get_unverified_header(before["id_token"])["kid"]
    secret = settings_of(app).secret_key
    with get_database(app).session_scope() as session:
        new_row, previous = keys.rotate(session, secret)
        new_kid = new_row.kid
        assert new_row.signs_from - utcnow() > timedelta(seconds=keys.JWKS_MAX_AGE)
    assert previous == [old_kid]
    # Published at once, not signing yet: a service with the cached JWKS still verifies.
    published = jwks(user.client)
    assert {key["kid"] for key in published["keys"]} == {old_kid, new_kid}
    during = tokens(user.client, kit)
    assert pyjwt.get_unverified_header(during["id_token"])["kid"] == old_kid
    verify_jwt(during["id_token"], cached, audience=kit.client_id)
    response = user.client.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == f"public, max-age={keys.JWKS_MAX_AGE}"

    _let_the_next_key_sign(app)
    after = tokens(user.client, kit)
    assert pyjwt.get_unverified_header(after["id_token"])["kid"] == new_kid
    verify_jwt(after["id_token"], published, audience=kit.client_id)  # fetched in time
    verify_jwt(before["id_token"], published, audience=kit.client_id)

    with get_database(app).session_scope() as session, pytest.raises(keys.KeyError_):
        keys.retire(session, new_kid)  # the signing key cannot be retired
    with get_database(app).session_scope() as session:
        keys.retire(session, old_kid)
    published = jwks(user.client)
    assert [key["kid"] for key in published["keys"]] == [new_kid]
    with pytest.raises(AssertionError):
        verify_jwt(before["id_token"], published, audience=kit.client_id)


# --------------------------------------------------------------------------- re-authentication


def _login_target(flow) -> tuple[str, dict[str, str]]:
    location = flow.response.headers["Location"]
    parts = urlsplit(location)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def _follow_login(user: Actions, next_url: str):
    answer = user.login(next=next_url)
    assert answer.status_code == 302
    target = answer.headers["Location"]
    if target.startswith("/passkeys/offer"):
        target = parse_qs(urlsplit(target).query)["next"][0]
    return user.client.get(target)


def test_no_session_sends_to_the_login_page_and_back(actions, kit):
    actions.create_active_account()
    flow = authorize(actions.client, kit)
    path, query = _login_target(flow)
    assert path == "/login" and query["next"].startswith("/oauth/authorize?")
    back = _follow_login(actions, query["next"])
    assert back.status_code == 302 and back.headers["Location"].startswith(kit.redirect_uri)
    assert "code=" in back.headers["Location"]


@pytest.mark.parametrize("params", [{"prompt": "login"}, {"max_age": "0"}])
def test_prompt_login_and_max_age_force_a_new_login(app, user, kit, params):
    first_login = _session_ids(app)
    flow = authorize(user.client, kit, **params)
    path, query = _login_target(flow)
    assert path == "/login"
    back = _follow_login(user, query["next"])
    assert back.status_code == 302, back.get_data(as_text=True)
    location = back.headers["Location"]
    assert location.startswith(kit.redirect_uri), location
    # A new login happened: the browser got a new session cookie (the session itself, and
    # the tokens other services hold for it, live on: see test_reauthentication_*).
    assert _session_ids(app) != first_login
    code = parse_qs(urlsplit(location).query)["code"][0]
    answer = exchange(user.client, flow, code=code)
    claims = verify_jwt(answer.get_json()["id_token"], jwks(user.client), audience=kit.client_id)
    assert claims["iat"] - claims["auth_time"] <= 5


def _marker_of(flow) -> str:
    _path, query = _login_target(flow)
    return parse_qs(urlsplit(query["next"]).query)["login_after"][0]


@pytest.mark.parametrize("params", [{"prompt": "login"}, {"max_age": "0"}])
@pytest.mark.parametrize("forged", ["0", "1", "plain-text", "e30.bad-signature"])
def test_a_forged_login_after_does_not_skip_the_new_login(user, kit, params, forged):
    flow = authorize(user.client, kit, login_after=forged, **params)
    path, _query = _login_target(flow)
    assert path == "/login"


def test_the_login_after_marker_belongs_to_its_request(app, user, kit):
    first = authorize(user.client, kit, prompt="login")
    marker = _marker_of(first)
    # The user logs in again (any reason); a *later* request of the service, with its own
    # state and nonce, must not be satisfied by the marker of the earlier one.
    _follow_login(user, "/espace")
    later = authorize(user.client, kit, prompt="login", login_after=marker)
    path, _query = _login_target(later)
    assert path == "/login"
    # The request it was made for is satisfied by that login.
    again = authorize(user.client, kit, **{**first.params, "login_after": marker})
    assert again.location.startswith(kit.redirect_uri) and "code=" in again.location


def test_the_login_after_marker_lapses(app, user, kit):
    flow = authorize(user.client, kit, prompt="login")
    _path, query = _login_target(flow)
    _follow_login(user, "/espace")
    secret = settings_of(app).secret_key
    stale = utcnow() - timedelta(seconds=policy.MARKER_MAX_AGE + 5)
    old = policy.sign_marker(secret, flow.params, stale)
    back = user.client.get(policy.return_path("/oauth/authorize", flow.params, old))
    assert back.status_code == 302 and urlsplit(back.headers["Location"]).path == "/login"
    fresh = user.client.get(query["next"])
    assert fresh.headers["Location"].startswith(kit.redirect_uri)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", " 5", "+5", "٣", "9" * 11])
def test_a_malformed_max_age_is_an_invalid_request(user, kit, value):
    flow = authorize(user.client, kit, max_age=value)
    assert flow.location.startswith(kit.redirect_uri)
    assert flow.query["error"] == "invalid_request"
    assert flow.query["state"] == flow.params["state"]


def test_max_age_satisfied_by_a_recent_login(user, kit):
    flow = authorize(user.client, kit, max_age="3600")
    assert flow.code


def test_prompt_none_without_session(actions, kit):
    flow = authorize(actions.client, kit, prompt="none")
    assert flow.query["error"] == "login_required"


# --------------------------------------------------------------------------- consent


def test_third_party_client_asks_consent_with_csrf(app, user):
    third = register(app, name="Logiciel de paie", scope="openid email")
    flow = authorize(user.client, third, scope="openid email")
    assert flow.response.status_code == 200
    page = flow.response.get_data(as_text=True)
    assert "Logiciel de paie" in page and "Autoriser" in page and "Refuser" in page
    action = "/oauth/authorize?" + urlsplit(flow.response.request.url).query
    # Without the CSRF token: refused, nothing issued.
    assert user.client.post(action, data={"decision": "allow"}).status_code == 400
    token = csrf_of(page)
    denied = user.client.post(action, data={"csrf_token": token, "decision": "deny"})
    assert denied.status_code == 302
    assert parse_qs(urlsplit(denied.headers["Location"]).query)["error"] == ["access_denied"]

    flow = authorize(user.client, third, scope="openid email")
    action = "/oauth/authorize?" + urlsplit(flow.response.request.url).query
    allowed = user.client.post(
        action,
        data={"csrf_token": csrf_of(flow.response.get_data(as_text=True)), "decision": "allow"},
    )
    assert allowed.status_code == 302 and "code=" in allowed.headers["Location"]
    with get_database(app).session_scope() as session:
        assert session.scalar(select(OAuthConsent.scope)) == "openid email"
    # Asked once: the next login goes straight back, unless the service asks again.
    assert authorize(user.client, third, scope="openid email").code
    assert (
        authorize(user.client, third, scope="openid email", prompt="consent").response.status_code
        == 200
    )
    assert authorize(user.client, third, scope="openid", prompt="none").code


def test_first_party_client_skips_consent(user, kit):
    assert authorize(user.client, kit).code


# --------------------------------------------------------------------------- step-up


def test_acr_values_passkey_sends_password_sessions_to_a_passkey_login(app, smtp, user, kit):
    from tests.softauthn import SoftAuthenticator
    from tests.webauthn.test_api import ORIGIN, Browser

    browser = Browser(user)
    auth = SoftAuthenticator(rp_id="localhost", origin=ORIGIN)
    browser.register(auth)

    flow = authorize(user.client, kit, acr_values="urn:authserver:passkey")
    path, query = _login_target(flow)
    assert path == "/login" and query["passkey"] == "1"
    page = user.client.get(flow.response.headers["Location"]).get_data(as_text=True)
    assert 'id="passkey-required"' in page and 'name="next"' in page  # password form kept

    answer = browser.login_verify(auth.assert_(browser.login_options()), next=query["next"])
    assert answer.status_code == 200, answer.get_data(as_text=True)
    back = user.client.get(answer.get_json()["redirect"])
    assert back.status_code == 302 and back.headers["Location"].startswith(kit.redirect_uri)
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    issued = exchange(user.client, flow, code=code).get_json()
    claims = verify_jwt(issued["id_token"], jwks(user.client), audience=kit.client_id)
    assert claims["acr"] == "urn:authserver:passkey"
    assert claims["amr"] == ["hwk", "user"]
    assert verify_status(user.client) == 200
    assert user.client.get("/auth/verify").headers["X-Auth-Amr"] == "hwk user"


# --------------------------------------------------------------------------- RP-initiated logout


def test_end_session_with_id_token_hint_logs_out_and_returns(user, kit):
    issued = tokens(user.client, kit)
    answer = user.client.get(
        "/oauth/logout",
        query_string={
            "id_token_hint": issued["id_token"],
            "post_logout_redirect_uri": "https://csp.example.fr/bye",
            "state": "s1",
        },
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://csp.example.fr/bye?state=s1"
    assert verify_status(user.client) == 401
    assert introspect(user.client, kit, issued["access_token"])["active"] is False


def test_end_session_without_hint_asks_first(user, kit):
    page = user.client.get("/oauth/logout", query_string={"client_id": kit.client_id})
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Me déconnecter" in body
    assert verify_status(user.client) == 200
    assert user.client.post("/oauth/logout", data={"confirm": "1"}).status_code == 400  # no CSRF
    assert verify_status(user.client) == 200
    done = user.client.post("/oauth/logout", data={"confirm": "1", "csrf_token": csrf_of(body)})
    assert done.status_code == 200 and "Vous êtes déconnecté" in done.get_data(as_text=True)
    assert verify_status(user.client) == 401


def test_end_session_never_redirects_to_an_unregistered_uri(user, kit):
    issued = tokens(user.client, kit)
    answer = user.client.get(
        "/oauth/logout",
        query_string={
            "id_token_hint": issued["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
    )
    assert answer.status_code == 200 and "Location" not in answer.headers


def test_end_session_with_a_forged_hint_is_refused(user, kit):
    answer = user.client.get("/oauth/logout", query_string={"id_token_hint": "a.b.c"})
    assert answer.status_code == 400
    assert verify_status(user.client) == 200


# --------------------------------------------------------------------------- re-login, same browser


def _backchannel_rows(app) -> list[BackchannelLogout]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(BackchannelLogout)))


def _service_b(app):
    return register(app, first_party=True, name="Service B", redirect_uris=[OTHER_REDIRECT])


def _relogin_for_b(user: Actions, kit_a, service_b, how: str) -> tuple[dict, dict]:
    """A gets tokens, then B asks for a new login (or a passkey) in the same browser."""
    if how == "step_up":
        from tests.softauthn import SoftAuthenticator
        from tests.webauthn.test_api import ORIGIN, Browser

        browser = Browser(user)
        auth = SoftAuthenticator(rp_id="localhost", origin=ORIGIN)
        browser.register(auth)
        params = {"acr_values": "urn:authserver:passkey"}
    else:
        params = {"prompt": "login"} if how == "prompt_login" else {"max_age": "0"}
    issued_a = tokens(user.client, kit_a)
    flow = authorize(user.client, service_b, **params)
    _path, query = _login_target(flow)
    if how == "step_up":
        answer = browser.login_verify(auth.assert_(browser.login_options()), next=query["next"])
        assert answer.status_code == 200, answer.get_data(as_text=True)
        back = user.client.get(answer.get_json()["redirect"])
    else:
        back = _follow_login(user, query["next"])
    assert back.status_code == 302 and back.headers["Location"].startswith(OTHER_REDIRECT)
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    answer = exchange(user.client, flow, code=code)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return issued_a, answer.get_json()


@pytest.mark.parametrize("how", ["prompt_login", "max_age", "step_up"])
def test_relogin_of_the_same_user_keeps_the_session_and_its_tokens(app, user, receiver, how):
    service = receiver()
    kit_a = register(app, first_party=True, backchannel_logout_uri=service.url)
    service_b = _service_b(app)
    issued_a, issued_b = _relogin_for_b(user, kit_a, service_b, how)

    # A is untouched: its tokens still work and it was told nothing.
    assert introspect(user.client, kit_a, issued_a["access_token"])["active"] is True
    assert userinfo(user.client, issued_a["access_token"]).status_code == 200
    refreshed = refresh(user.client, kit_a, issued_a["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert _backchannel_rows(app) == []
    assert len(_session_ids(app)) == 1 and verify_status(user.client) == 200

    # One provider session, one ``sid``: what A learnt at its login still names it, so the
    # back-channel logout sent when the session ends reaches A's local session.
    published = jwks(user.client)
    sid_a = verify_jwt(issued_a["id_token"], published, audience=kit_a.client_id)["sid"]
    claims_b = verify_jwt(issued_b["id_token"], published, audience=service_b.client_id)
    assert claims_b["sid"] == sid_a
    if how == "step_up":
        assert claims_b["acr"] == "urn:authserver:passkey"
    page = user.client.get("/account/sessions").get_data(as_text=True)
    user.client.post("/logout", data={"csrf_token": csrf_of(page)})
    (token,) = service.wait(1)
    assert verify_jwt(token, published, audience=kit_a.client_id)["sid"] == sid_a


def test_another_user_logging_in_in_that_browser_ends_the_first_session(app, smtp, user, receiver):
    service = receiver()
    kit_a = register(app, first_party=True, backchannel_logout_uri=service.url)
    service_b = _service_b(app)
    Actions(app.test_client(), smtp).create_active_account("claire.martin")
    issued_a = tokens(user.client, kit_a)
    sid_a = verify_jwt(issued_a["id_token"], jwks(user.client), audience=kit_a.client_id)["sid"]

    flow = authorize(user.client, service_b, prompt="login")
    _path, query = _login_target(flow)
    answer = user.login("claire.martin", next=query["next"])
    assert answer.status_code == 302

    assert introspect(user.client, kit_a, issued_a["access_token"])["active"] is False
    assert refresh(user.client, kit_a, issued_a["refresh_token"]).status_code == 400
    assert [(row.client_id, row.reason) for row in _backchannel_rows(app)] == [
        (kit_a.client_id, "replaced")
    ]
    (token,) = service.wait(1)
    assert verify_jwt(token, jwks(user.client), audience=kit_a.client_id)["sid"] == sid_a
    assert _session_ids(app) == []  # martin.dupont has no session left


def test_a_client_without_the_refresh_grant_gets_no_refresh_token(app, user):
    """ASVS 10.4.4: each client uses only the grants it needs."""
    login_only = register(app, name="Attestations", first_party=True, refresh_tokens=False)
    answer = tokens(user.client, login_only)
    assert "refresh_token" not in answer
    assert userinfo(user.client, answer["access_token"]).status_code == 200
    # A refresh token of another client is no way in either.
    other = tokens(user.client, register(app, name="Kit", first_party=True))
    refused = refresh(user.client, login_only, other["refresh_token"])
    assert refused.status_code in (400, 401)
    assert refused.get_json()["error"] in ("unauthorized_client", "invalid_grant")


def test_clients_registered_before_grant_types_keep_both(app, user, kit):
    from sqlalchemy import update

    from authserver.db import get_database
    from authserver.models import OAuthClient

    with get_database(app).session_scope() as session:
        session.execute(update(OAuthClient).values(grant_types=None))
    assert "refresh_token" in tokens(user.client, kit)
