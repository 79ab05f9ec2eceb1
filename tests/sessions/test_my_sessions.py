"""« Mes sessions »: each live session with its device, IP, times and method; revoke one or
all the others, with immediate effect everywhere."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from authserver.db import get_database
from authserver.models import BackchannelLogout, OAuthConsent
from tests.conftest import PASSWORD, Actions, csrf_of
from tests.sessions.oidc_support import (
    authorize,
    exchange,
    introspect,
    jwks,
    refresh,
    register,
    tokens,
    userinfo,
    verify_jwt,
)


def second_browser(app, smtp, user_agent: str) -> Actions:
    other = Actions(app.test_client(), smtp)
    other.client.environ_base["HTTP_USER_AGENT"] = user_agent
    other.client.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    assert other.login().status_code == 302
    return other


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def user(actions) -> Actions:
    actions.create_active_account()
    actions.client.environ_base["HTTP_USER_AGENT"] = CHROME_WIN
    assert actions.login().status_code == 302
    return actions


def page(client: FlaskClient) -> str:
    answer = client.get("/account/sessions")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_requires_login(client):
    answer = client.get("/account/sessions")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_lists_each_live_session(app, smtp, user):
    second_browser(app, smtp, FIREFOX)
    body = page(user.client)
    assert body.count('class="fr-card fr-mb-3w session-item"') == 2
    assert "Chrome 131" in body and "Windows 10" in body
    assert "Firefox 131" in body and "Linux" in body
    assert "203.0.113.7" in body
    assert "Cette session" in body
    assert "Mot de passe" in body
    assert "Connexion le" in body and "Dernière activité le" in body


def test_revoke_one_takes_effect_everywhere_at_once(app, smtp, user):
    other = second_browser(app, smtp, FIREFOX)
    assert other.client.get("/auth/verify").status_code == 200
    body = page(user.client)
    sids = re.findall(r"/account/sessions/([0-9a-f]{32})/revoke", body)
    assert len(sids) == 1  # not for this browser's own session
    answer = user.client.post(
        f"/account/sessions/{sids[0]}/revoke", data={"csrf_token": csrf_of(body)}
    )
    assert answer.status_code == 302
    assert other.client.get("/auth/verify").status_code == 401
    assert other.client.get("/account/sessions").status_code == 302  # pages too
    assert user.client.get("/auth/verify").status_code == 200
    assert page(user.client).count("session-item") == 1


def test_revoke_needs_csrf(app, smtp, user):
    other = second_browser(app, smtp, FIREFOX)
    body = page(user.client)
    sid = re.findall(r"/account/sessions/([0-9a-f]{32})/revoke", body)[0]
    assert user.client.post(f"/account/sessions/{sid}/revoke").status_code == 400
    assert user.client.post("/account/sessions/revoke-others").status_code == 400
    assert other.client.get("/auth/verify").status_code == 200


def test_revoke_all_others(app, smtp, user):
    others = [second_browser(app, smtp, FIREFOX) for _ in range(2)]
    body = page(user.client)
    answer = user.client.post("/account/sessions/revoke-others", data={"csrf_token": csrf_of(body)})
    assert answer.status_code == 302
    assert all(o.client.get("/auth/verify").status_code == 401 for o in others)
    assert user.client.get("/auth/verify").status_code == 200
    assert "2 autres sessions fermées." in page(user.client)


def test_cannot_revoke_another_users_session(app, smtp, user):
    intruder = Actions(app.test_client(), smtp)
    intruder.create_active_account("claire.martin")
    assert intruder.login("claire.martin", PASSWORD).status_code == 302
    body = page(user.client)
    own = page(intruder.client)
    theirs = re.findall(r'data-sid="([0-9a-f]{32})"', own)[0]
    answer = user.client.post(
        f"/account/sessions/{theirs}/revoke", data={"csrf_token": csrf_of(body)}
    )
    assert answer.status_code == 404
    assert intruder.client.get("/auth/verify").status_code == 200


def test_own_session_is_not_revoked_here(user):
    body = page(user.client)
    sid = re.findall(r'data-sid="([0-9a-f]{32})"', body)[0]
    answer = user.client.post(f"/account/sessions/{sid}/revoke", data={"csrf_token": csrf_of(body)})
    assert answer.status_code == 400
    assert user.client.get("/auth/verify").status_code == 200


def test_the_account_page_links_to_my_sessions(user):
    body = user.client.get("/account").get_data(as_text=True)
    security = body[body.index(">Sécurité<") :]
    assert 'href="/account/sessions">Mes sessions</a>' in security


# --------------------------------------------------------------------------- connected services


def _consent(user: Actions, service) -> dict:
    """The third-party flow through the consent page (« Autoriser »), then the tokens."""
    flow = authorize(user.client, service, scope="openid email")
    assert flow.response.status_code == 200
    action = "/oauth/authorize?" + urlsplit(flow.response.request.url).query
    body = flow.response.get_data(as_text=True)
    allowed = user.client.post(action, data={"csrf_token": csrf_of(body), "decision": "allow"})
    code = parse_qs(urlsplit(allowed.headers["Location"]).query)["code"][0]
    answer = exchange(user.client, flow, code=code)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def _service_items(body: str) -> dict[str, str]:
    return dict(
        re.findall(r'data-client-id="([^"]+)".*?<h3[^>]*>\s*([^<]+?)\s*<', body, flags=re.S)
    )


@pytest.fixture
def services(app, user, receiver):
    """A third-party service the user consented to, and a first-party one with tokens; both
    with back-channel endpoints."""
    paie, kit = receiver(), receiver()
    third = register(
        app, name="Logiciel de paie", scope="openid email", backchannel_logout_uri=paie.url
    )
    first = register(app, first_party=True, name="Kit CSP", backchannel_logout_uri=kit.url)
    return {
        "third": (third, _consent(user, third), paie),
        "first": (first, tokens(user.client, first), kit),
    }


def test_lists_the_services_the_user_let_in(user, services):
    body = page(user.client)
    third, _, _ = services["third"]
    first, _, _ = services["first"]
    assert _service_items(body) == {third.client_id: "Logiciel de paie", first.client_id: "Kit CSP"}
    assert "Services connectés" in body and "Retirer l'autorisation" in body
    assert "Votre adresse e-mail" in body  # what the consent granted, in its words
    assert "Autorisé le" in body and "Dernière connexion le" in body
    assert "Service du portail" in body


def test_nothing_listed_without_services(user):
    body = page(user.client)
    assert _service_items(body) == {}
    assert "Aucun service n'utilise votre compte" in body


@pytest.mark.parametrize("which", ["third", "first"])
def test_withdrawing_a_service_ends_its_access_and_tells_it(app, user, services, which):
    service, issued, endpoint = services[which]
    other = "first" if which == "third" else "third"
    other_service, other_issued, other_endpoint = services[other]
    published = jwks(user.client)
    sid = verify_jwt(issued["id_token"], published, audience=service.client_id)["sid"]

    body = page(user.client)
    answer = user.client.post(
        f"/account/services/{service.client_id}/withdraw", data={"csrf_token": csrf_of(body)}
    )
    assert answer.status_code == 302
    after = page(user.client)
    assert "a été retirée" in after
    assert list(_service_items(after)) == [other_service.client_id]

    # The service's tokens are dead everywhere, and it was told by back-channel.
    assert introspect(user.client, service, issued["access_token"])["active"] is False
    assert userinfo(user.client, issued["access_token"]).status_code == 401
    assert refresh(user.client, service, issued["refresh_token"]).status_code == 400
    (token,) = endpoint.wait(1)
    claims = verify_jwt(token, published, audience=service.client_id)
    assert claims["sid"] == sid
    with get_database(app).session_scope() as session:
        rows = session.scalars(select(BackchannelLogout)).all()
        assert [(r.client_id, r.reason) for r in rows] == [(service.client_id, "user_withdrew")]
        consents = session.scalars(select(OAuthConsent.client_id)).all()
    assert service.client_id not in consents
    # The other service and the session itself are untouched.
    assert introspect(user.client, other_service, other_issued["access_token"])["active"] is True
    assert other_endpoint.tokens == []
    assert user.client.get("/auth/verify").status_code == 200
    # A third-party service must ask again; a first-party one logs straight back in.
    again = authorize(user.client, service, scope="openid email")
    if which == "third":
        assert again.response.status_code == 200 and "Autoriser" in again.response.get_data(
            as_text=True
        )
    else:
        assert again.code


def test_withdrawing_needs_csrf_and_a_service_of_this_user(app, smtp, user, services):
    third, issued, _ = services["third"]
    assert user.client.post(f"/account/services/{third.client_id}/withdraw").status_code == 400
    assert introspect(user.client, third, issued["access_token"])["active"] is True

    intruder = Actions(app.test_client(), smtp)
    intruder.create_active_account("claire.martin")
    assert intruder.login("claire.martin", PASSWORD).status_code == 302
    body = page(intruder.client)
    answer = intruder.client.post(
        f"/account/services/{third.client_id}/withdraw", data={"csrf_token": csrf_of(body)}
    )
    assert answer.status_code == 404
    assert introspect(user.client, third, issued["access_token"])["active"] is True


def test_an_unexchanged_code_is_spent_by_the_withdrawal(user, services):
    first, _, _ = services["first"]
    pending = authorize(user.client, first)
    body = page(user.client)
    user.client.post(
        f"/account/services/{first.client_id}/withdraw", data={"csrf_token": csrf_of(body)}
    )
    assert exchange(user.client, pending).status_code == 400


def test_closing_sessions_needs_a_recent_authentication(app, smtp, user):
    """ASVS 7.5.2: a stolen cookie must not log the owner out of their other browsers."""
    from datetime import timedelta

    from sqlalchemy import update

    from authserver.models import AuthSession, utcnow

    other = second_browser(app, smtp, FIREFOX)
    with get_database(app).session_scope() as session:
        session.execute(
            update(AuthSession).values(authenticated_at=utcnow() - timedelta(minutes=6))
        )
    body = page(user.client)
    sid = re.findall(r"/account/sessions/([0-9a-f]{32})/revoke", body)[0]
    for path in (f"/account/sessions/{sid}/revoke", "/account/sessions/revoke-others"):
        answer = user.client.post(path, data={"csrf_token": csrf_of(body)})
        target = urlsplit(answer.headers["Location"])
        assert target.path == "/account/reauth"
        assert parse_qs(target.query)["next"] == ["/account/sessions"]
        assert other.client.get("/auth/verify").status_code == 200
    confirmed = user.client.post(
        "/account/reauth",
        data={"csrf_token": csrf_of(body), "password": PASSWORD, "next": "/account/sessions"},
    )
    assert confirmed.headers["Location"] == "/account/sessions"
    answer = user.client.post("/account/sessions/revoke-others", data={"csrf_token": csrf_of(body)})
    assert answer.status_code == 302
    assert other.client.get("/auth/verify").status_code == 401


def test_a_consent_can_be_modified_one_item_at_a_time(app, user, services):
    """ASVS 10.7.3: withdraw « Votre adresse e-mail » from a service, keep the rest."""
    service, issued, endpoint = services["third"]
    first, _first_issued, _ = services["first"]
    body = page(user.client)
    assert "Modifier l'autorisation" in body
    action = f"/account/services/{service.client_id}/scopes/email/withdraw"
    assert action in body
    # « openid » is the login itself, and first-party services have no consent to modify.
    assert f"/account/services/{service.client_id}/scopes/openid/withdraw" not in body
    assert f"/account/services/{first.client_id}/scopes/" not in body
    assert (
        user.client.post(
            f"/account/services/{first.client_id}/scopes/email/withdraw",
            data={"csrf_token": csrf_of(body)},
        ).status_code
        == 404
    )

    answer = user.client.post(action, data={"csrf_token": csrf_of(body)})
    assert answer.status_code == 302
    assert "n'a plus accès à : Votre adresse e-mail" in html.unescape(page(user.client))
    with get_database(app).session_scope() as session:
        (consent,) = session.scalars(
            select(OAuthConsent).where(OAuthConsent.client_id == service.client_id)
        ).all()
    assert consent.scope == "openid"
    # Its tokens ended (it was told), and asking for the e-mail again needs a new consent.
    assert introspect(user.client, service, issued["access_token"])["active"] is False
    assert len(endpoint.wait(1)) == 1
    again = authorize(user.client, service, scope="openid email")
    assert again.response.status_code == 200
    assert "Autoriser" in again.response.get_data(as_text=True)
    assert authorize(user.client, service, scope="openid").code
    # Withdrawing twice, or an unknown item, is a 404.
    body = page(user.client)
    assert user.client.post(action, data={"csrf_token": csrf_of(body)}).status_code == 404
    assert (
        user.client.post(
            f"/account/services/{service.client_id}/scopes/secret/withdraw",
            data={"csrf_token": csrf_of(body)},
        ).status_code
        == 404
    )
