"""Every form page, refused, starts with its error summary (issue 12).

After a refused submit a person must not hunt for the errors: the page's top holds one alert
(templates/macros/forms.html ``error_summary``) with a link per error to its field, which
static/js/error-summary.js focuses. The errors also stay next to their fields (the contract).
Here, over HTTP with the real app: the summary is there, each link names a field of the page
and repeats the sentence shown next to it; the browser side is in
tests/e2e/test_accessibility_browser.py.
"""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask

from tests.conftest import PASSWORD, Actions, csrf_of, link_in, path_of
from tests.establishments.test_flow import attach, employer
from tests.services import SMTPServer

SUMMARY = re.compile(r'<div class="fr-alert[^"]*app-error-summary"[^>]*>(.*?)</div>', re.S)
LINK = re.compile(r'<li><a href="#([^"]+)">(.*?)</a></li>')


def summary_of(response) -> list[tuple[str, str]]:
    """The summary's (field id, sentence) pairs, after checking each names a field of the
    page whose error, next to it, says the same (radios: the group's error)."""
    page = response.get_data(as_text=True)
    found = SUMMARY.search(page)
    assert found, "no error summary"
    assert 'src="/static/js/error-summary.js"' in page
    links = [(target, html.unescape(text)) for target, text in LINK.findall(found.group(1))]
    for target, text in links:
        assert re.search(rf'<(input|textarea|select)[^>]* id="{re.escape(target)}"', page), target
        # A radio's error is its group's: « civility-0 » → « civility-error ».
        group = target if f'id="{target}-error"' in page else target.rsplit("-", 1)[0]
        beside = re.search(rf'<p class="fr-error-text" id="{group}-error">(.*?)</p>', page, re.S)
        assert beside and html.unescape(beside.group(1)) == text, (target, text)
    return links


def test_signup(client, actions: Actions) -> None:
    response = client.post("/signup", data={"csrf_token": actions.csrf("/signup")})
    assert response.status_code == 400
    links = summary_of(response)
    assert [target for target, _ in links] == [
        "username",
        "password",
        "civility-0",
        "last_name",
        "first_name",
        "email",
        "phone",
        "cgu",
    ]
    assert "Le formulaire contient 8 erreurs" in response.get_data(as_text=True)


def test_login_fields_and_wrong_password(client, actions: Actions) -> None:
    response = client.post("/login", data={"csrf_token": actions.csrf()})
    assert [t for t, _ in summary_of(response)] == ["username", "password"]
    actions.create_active_account()
    wrong = actions.login(password="pas le bon mot de passe")
    assert wrong.status_code == 401
    page = wrong.get_data(as_text=True)
    assert re.search(
        r'id="error-summary"[^>]*>\s*<h2[^>]*>Identifiant ou mot de passe incorrect', page
    )


def test_forgot_password(client, actions: Actions) -> None:
    response = client.post("/password/forgot", data={"csrf_token": actions.csrf()})
    assert response.status_code == 400
    assert summary_of(response) == [
        ("username", "Veuillez saisir votre identifiant ou votre adresse e-mail.")
    ]


def test_reset_password(client, actions: Actions, smtp: SMTPServer) -> None:
    actions.create_active_account()
    before = len(smtp.messages)
    client.post(
        "/password/forgot", data={"csrf_token": actions.csrf(), "username": "martin.dupont"}
    )
    link = path_of(link_in(smtp.wait_for(before + 1)[-1], "/password/reset/"))
    page = client.get(link).get_data(as_text=True)
    response = client.post(
        link,
        data={
            "csrf_token": csrf_of(page),
            "password": "une phrase assez longue",
            "password_confirm": "une autre phrase longue",
        },
    )
    assert summary_of(response) == [
        ("password_confirm", "Les deux mots de passe ne sont pas identiques.")
    ]


def test_pages_of_a_logged_in_employer(app: Flask, smtp: SMTPServer) -> None:
    browser = employer(app, smtp, "martin.dupont")
    client = browser.client
    token = browser.csrf("/account")

    siret = client.post("/establishment", data={"csrf_token": token, "siret": "123"})
    assert [t for t, _ in summary_of(siret)] == ["siret"]
    assert attach(browser, "69279251800015").status_code == 302
    certification = client.post("/certification", data={"csrf_token": token})
    assert [t for t, _ in summary_of(certification)] == ["method-online"]

    account = client.post("/account", data={"csrf_token": token, "phone": "12"})
    assert [t for t, _ in summary_of(account)] == [
        "civility-madame",
        "last_name",
        "first_name",
        "phone",
    ]
    email = client.post("/account/email", data={"csrf_token": token, "email": "pas-une-adresse"})
    assert [t for t, _ in summary_of(email)] == ["email"]
    password = client.post(
        "/account/password",
        data={"csrf_token": token, "current_password": PASSWORD, "password": "court"},
    )
    assert [t for t, _ in summary_of(password)] == ["password"]
    reauth = client.post("/account/reauth", data={"csrf_token": token, "password": "faux"})
    assert reauth.status_code == 401
    assert [t for t, _ in summary_of(reauth)] == ["password"]


@pytest.mark.parametrize("path", ["/signup", "/login", "/password/forgot"])
def test_nothing_to_say_no_summary(client, path: str) -> None:
    page = client.get(path).get_data(as_text=True)
    assert "error-summary" not in page
