"""« Changer mon mot de passe » while logged in: the current password first (ASVS 6.2.3),
checked with the login's throttle; other sessions end, this one stays."""

from __future__ import annotations

import html

from sqlalchemy import select

from authserver.db import get_database
from authserver.models import LoginEvent
from tests.conftest import PASSWORD, Actions, csrf_of

NEW = "un autre mot de passe tout neuf 2026"


def change(actions: Actions, current: str | None, new: str = NEW, confirm: str | None = None):
    page = actions.client.get("/account/password").get_data(as_text=True)
    data = {"csrf_token": csrf_of(page), "password": new, "password_confirm": confirm or new}
    if current is not None:
        data["current_password"] = current
    return actions.client.post("/account/password", data=data)


def test_the_current_password_is_required_and_checked(app, smtp, actions):
    actions.create_active_account()
    assert actions.login().status_code == 302
    other = Actions(app.test_client(), smtp)
    assert other.login().status_code == 302

    page = actions.client.get("/account").get_data(as_text=True)
    assert 'href="/account/password"' in page
    form = html.unescape(actions.client.get("/account/password").get_data(as_text=True))
    for label in ("Mot de passe actuel", "Nouveau mot de passe", "Confirmation mot de passe"):
        assert label in form

    missing = change(actions, None)
    assert missing.status_code == 400
    assert "Veuillez saisir votre mot de passe actuel." in html.unescape(
        missing.get_data(as_text=True)
    )
    wrong = change(actions, "pas le bon mot de passe")
    assert wrong.status_code == 401
    assert "Mot de passe actuel incorrect." in html.unescape(wrong.get_data(as_text=True))
    weak = change(actions, PASSWORD, new="motdepasse")
    assert weak.status_code == 400

    done = change(actions, PASSWORD)
    assert done.status_code == 302 and done.headers["Location"] == "/account"
    assert actions.client.get("/account").status_code == 200  # this browser stays
    assert other.client.get("/account").status_code == 302  # the other one is logged out
    assert Actions(app.test_client(), smtp).login(password=NEW).status_code == 302
    assert Actions(app.test_client(), smtp).login(password=PASSWORD).status_code == 401
    with get_database(app).session_scope() as session:
        reasons = list(session.scalars(select(LoginEvent.reason).order_by(LoginEvent.id)))
    assert "change_bad_credentials" in reasons


def test_guessing_the_current_password_is_throttled(app, smtp, actions):
    actions.create_active_account()
    assert actions.login().status_code == 302
    statuses = [change(actions, f"essai {n}").status_code for n in range(7)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert change(actions, PASSWORD).status_code == 429
    assert Actions(app.test_client(), smtp).login(password=NEW).status_code == 401
