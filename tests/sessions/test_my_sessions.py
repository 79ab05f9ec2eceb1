"""« Mes sessions »: each live session with its device, IP, times and method; revoke one or
all the others, with immediate effect everywhere."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Actions, csrf_of


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
    import re

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
    import re

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
    assert "2 autre(s) session(s) fermée(s)." in page(user.client)


def test_cannot_revoke_another_users_session(app, smtp, user):
    intruder = Actions(app.test_client(), smtp)
    intruder.create_active_account("claire.martin")
    assert intruder.login("claire.martin", PASSWORD).status_code == 302
    body = page(user.client)
    own = page(intruder.client)
    import re

    theirs = re.findall(r'data-sid="([0-9a-f]{32})"', own)[0]
    answer = user.client.post(
        f"/account/sessions/{theirs}/revoke", data={"csrf_token": csrf_of(body)}
    )
    assert answer.status_code == 404
    assert intruder.client.get("/auth/verify").status_code == 200


def test_own_session_is_not_revoked_here(user):
    body = page(user.client)
    import re

    sid = re.findall(r'data-sid="([0-9a-f]{32})"', body)[0]
    answer = user.client.post(f"/account/sessions/{sid}/revoke", data={"csrf_token": csrf_of(body)})
    assert answer.status_code == 400
    assert user.client.get("/auth/verify").status_code == 200
