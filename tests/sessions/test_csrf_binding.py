"""CSRF tokens are bound to the login session (issue 11).

Found: a sibling subdomain planting its own Flask session cookie under
AUTHSERVER_COOKIE_DOMAIN made its CSRF token valid in the victim's session.
"""

from __future__ import annotations

from tests.conftest import PASSWORD, Actions, csrf_of

FLASK_COOKIE = "authserver_flask"


def profile_form(token: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "civility": "madame",
        "last_name": "Piégée",
        "first_name": "Alice",
        "phone": "07 12 34 56 78",
    }


def test_a_planted_flask_cookie_does_not_carry_its_token_into_a_session(app, smtp, actions):
    actions.create_active_account("martin.dupont")
    assert actions.login().status_code == 302
    victim = actions.client

    # The attacker's own browser: an anonymous page gives a Flask cookie and its token.
    attacker = app.test_client()
    their_token = csrf_of(attacker.get("/login").get_data(as_text=True))
    their_cookie = attacker.get_cookie(FLASK_COOKIE).value

    # Planted in the victim's browser (a sibling subdomain can write a parent-domain cookie).
    victim.set_cookie(FLASK_COOKIE, their_cookie)
    refused = victim.post("/account", data=profile_form(their_token))
    assert refused.status_code == 400
    page = victim.get("/account").get_data(as_text=True)
    assert "Piégée" not in page

    # The victim's own page keeps working: its token is derived from the login session.
    assert victim.post("/account", data=profile_form(csrf_of(page))).status_code == 302


def test_a_token_of_another_login_session_is_refused(app, smtp):
    first = Actions(app.test_client(), smtp)
    first.create_active_account("martin.dupont")
    assert first.login().status_code == 302
    token_of_first = csrf_of(first.client.get("/account").get_data(as_text=True))

    second = Actions(app.test_client(), smtp)
    assert second.login("martin.dupont", PASSWORD).status_code == 302
    # Same account, another browser (another session): the first one's token is refused.
    assert second.client.post("/account", data=profile_form(token_of_first)).status_code == 400
    token = csrf_of(second.client.get("/account").get_data(as_text=True))
    assert second.client.post("/account", data=profile_form(token)).status_code == 302


def test_the_token_survives_a_reauthentication(app, smtp, actions):
    """Same session, new cookie value: the page's token stays valid."""
    actions.create_active_account("martin.dupont")
    assert actions.login().status_code == 302
    token = csrf_of(actions.client.get("/account").get_data(as_text=True))
    reauth = actions.client.post(
        "/account/reauth", data={"csrf_token": token, "password": PASSWORD, "next": "/account"}
    )
    assert reauth.status_code == 302
    assert actions.client.post("/account", data=profile_form(token)).status_code == 302


def test_https_uses_the_host_prefix(make_app):
    app = make_app(AUTHSERVER_BASE_URL="https://entreprise.example.fr")
    page = app.test_client().get("/login", base_url="https://entreprise.example.fr")
    (cookie,) = [h for h in page.headers.getlist("Set-Cookie") if "authserver_flask=" in h]
    assert cookie.startswith("__Host-authserver_flask=")
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert "secure" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain=") for a in attributes)


def test_probes_with_a_session_cookie_touch_no_database(app, smtp, actions):
    """/healthz stays up while the database is down, cookies or not."""
    from sqlalchemy import event

    from authserver.db import get_database

    actions.create_active_account("martin.dupont")
    assert actions.login().status_code == 302
    statements: list[str] = []
    engine = get_database(app).engine

    def count(*args, **kwargs) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert actions.client.get("/healthz").status_code == 200
        assert actions.client.get("/static/js/login.js").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []
