"""The CSP kit (examples/csp_kit) against a live authserver, over HTTP without a browser:
login through OIDC, certified downloads, refresh when the access token expired, back-channel
logout, and what it refuses."""

from __future__ import annotations

import html
import re
import threading
import time

import pytest
from sqlalchemy import update

from authserver.db import get_database
from authserver.models import User
from examples.csp_kit import create_app as create_kit
from examples.csp_kit.documents import DOCUMENTS, human_size
from tests.conftest import Actions
from tests.services import LiveServer, free_port
from tests.sessions.oidc_support import certify, register


@pytest.fixture
def live(make_app):
    port = free_port()
    app = make_app(AUTHSERVER_BASE_URL=f"http://localhost:{port}")
    server = LiveServer(app, port=port).start()
    yield app, server.url
    server.stop()


@pytest.fixture
def setup(live, smtp):
    app, url = live
    kit_url = "http://kit.test"
    client = register(
        app,
        first_party=True,
        redirect_uris=[f"{kit_url}/callback"],
        post_logout_redirect_uris=[f"{kit_url}/"],
    )
    kit = create_kit(
        {
            "CSPKIT_ISSUER": url,
            "CSPKIT_CLIENT_ID": client.client_id,
            "CSPKIT_CLIENT_SECRET": client.secret,
            "CSPKIT_BASE_URL": kit_url,
        }
    )
    user = Actions(app.test_client(), smtp)
    user.create_active_account()
    assert user.login().status_code == 302
    return app, url, kit, user


def kit_login(kit, user, url):
    browser = kit.test_client()
    to_provider = browser.get("/login")
    assert to_provider.status_code == 302 and to_provider.headers["Location"].startswith(url)
    back = user.client.get(to_provider.headers["Location"].removeprefix(url))
    assert back.status_code == 302, back.get_data(as_text=True)
    done = browser.get(back.headers["Location"].removeprefix("http://kit.test"))
    assert done.status_code == 302
    return browser


def test_certified_user_downloads_and_refresh_is_used_when_needed(setup):
    app, url, kit, user = setup
    certify(app)
    browser = kit_login(kit, user, url)
    page = browser.get("/").get_data(as_text=True)
    assert "Téléchargement des documents" in page and "869 Ko" in page
    pdf = browser.get("/documents/demande-allocations")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-1.4")
    assert pdf.headers["Content-Type"] == "application/pdf"

    store = kit.extensions["cspkit.sessions"]
    (item,) = store._items.values()
    old_refresh = item.token["refresh_token"]
    item.token["expires_at"] = time.time() - 1  # the access token has expired
    assert browser.get("/documents/bulletin-acceptation").status_code == 200
    assert item.token["refresh_token"] != old_refresh  # rotated


def test_uncertified_user_sees_the_message_and_cannot_download(setup):
    _app, url, kit, user = setup
    browser = kit_login(kit, user, url)
    page = browser.get("/").get_data(as_text=True)
    assert "vous devez disposer d" in page and "08 06 06 00 20" in page
    # A direct link to a document: the same message, not a bare error page.
    refused = browser.get("/documents/demande-allocations")
    assert refused.status_code == 403 and refused.mimetype == "text/html"
    body = refused.get_data(as_text=True)
    assert 'id="certification-required"' in body and "08 06 06 00 20" in body
    assert "Télécharger" not in body
    assert browser.get("/documents/nope").status_code == 404


def test_revoked_session_is_noticed_at_the_next_download(setup):
    app, url, kit, user = setup
    certify(app)
    browser = kit_login(kit, user, url)
    with get_database(app).session_scope() as session:
        session.execute(update(User).values(locked_at=User.created_at))
    answer = browser.get("/documents/demande-allocations")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")


def test_backchannel_endpoint_checks_the_token(setup):
    app, url, kit, user = setup
    browser = kit_login(kit, user, url)
    assert "Se déconnecter" in browser.get("/").get_data(as_text=True)
    forged = kit.test_client().post("/backchannel-logout", data={"logout_token": "a.b.c"})
    assert forged.status_code == 400
    from authserver.sessions.oidc import backchannel, keys

    store = kit.extensions["cspkit.sessions"]
    (item,) = store._items.values()
    with app.app_context(), get_database(app).session_scope() as session:
        kid, key = keys.signing_key(session, app.config["AUTHSERVER"].secret_key)
    token = backchannel.logout_token(
        issuer=url,
        client_id=kit.config["CSPKIT"].client_id,
        sub=item.claims["sub"],
        sid=item.claims["sid"],
        kid=kid,
        key=key,
        now=int(time.time()),
    )
    assert (
        kit.test_client().post("/backchannel-logout", data={"logout_token": token}).status_code
        == 200
    )
    assert "Je lance la démarche" in browser.get("/").get_data(as_text=True)


def kit_csrf(browser) -> str:
    page = browser.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_logout_goes_through_the_end_session_endpoint(setup):
    _app, url, kit, user = setup
    browser = kit_login(kit, user, url)
    answer = browser.post("/logout", data={"csrf_token": kit_csrf(browser)})
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(f"{url}/oauth/logout?id_token_hint=")
    assert "Je lance la démarche" in browser.get("/").get_data(as_text=True)


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_logout_needs_the_pages_csrf_token(setup, token):
    _app, url, kit, user = setup
    browser = kit_login(kit, user, url)
    kit_csrf(browser)  # the browser has a token; a cross-site form does not know it
    answer = browser.post("/logout", data={} if token is None else {"csrf_token": token})
    assert answer.status_code == 400
    assert "Se déconnecter" in browser.get("/").get_data(as_text=True)  # still logged in


def test_parallel_downloads_after_expiry_refresh_once(setup):
    """Two downloads started together once the access token expired: one refresh, both
    served, and the provider sees no reuse (which would revoke the family)."""
    app, url, kit, user = setup
    certify(app)
    browser = kit_login(kit, user, url)
    store = kit.extensions["cspkit.sessions"]
    (item,) = store._items.values()
    item.token["expires_at"] = time.time() - 1

    portal = kit.extensions["cspkit.portal"]
    original = portal.fetch_access_token
    calls: list[str] = []

    def slow_refresh(**params):
        calls.append(params["refresh_token"])
        time.sleep(0.3)  # long enough for the second download to arrive meanwhile
        return original(**params)

    portal.fetch_access_token = slow_refresh
    second = kit.test_client()
    second.set_cookie("cspkit_session", browser.get_cookie("cspkit_session").value)
    start = threading.Barrier(2)
    answers: dict[str, int] = {}

    def download(name: str, client) -> None:
        start.wait()
        answers[name] = client.get(f"/documents/{name}").status_code

    threads = [
        threading.Thread(target=download, args=(name, client))
        for name, client in (("bulletin-acceptation", browser), ("demande-allocations", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {"bulletin-acceptation": 200, "demande-allocations": 200}
    assert len(calls) == 1
    assert browser.get("/documents/document-information").status_code == 200


def test_missing_configuration_is_one_clear_error():
    from examples.csp_kit import ConfigError

    with pytest.raises(ConfigError, match="CSPKIT_ISSUER"):
        create_kit({"CSPKIT_CLIENT_ID": "x", "CSPKIT_BASE_URL": "http://kit.test"})


def test_the_kit_looks_like_the_portal_and_leads_back_to_the_espace(setup):
    app, url, kit, user = setup
    certify(app)
    browser = kit_login(kit, user, url)
    answer = browser.get("/")
    page = answer.get_data(as_text=True)
    # The portal's design system, served from the repository's vendored copy.
    assert '<link rel="stylesheet" href="/dsfr/dsfr.min.css">' in page
    css = browser.get("/dsfr/dsfr.min.css")
    assert css.status_code == 200 and css.mimetype == "text/css" and b".fr-header" in css.data
    assert "img-src 'self' data:" in answer.headers["Content-Security-Policy"]
    # The way back, in the header and the breadcrumb.
    assert page.count(f'href="{url}/espace"') >= 2
    # The guide's words; no debug line without CSPKIT_SHOW_ID_TOKEN.
    assert "Visualiser" in page and "Connexion :" not in page and 'id="acr"' not in page
    assert browser.get("/documents/../../pyproject.toml").status_code == 404
    assert browser.get("/dsfr/../../pyproject.toml").status_code == 404


def test_the_documents_weigh_what_the_page_says(setup):
    app, url, kit, user = setup
    certify(app)
    browser = kit_login(kit, user, url)
    page = html.unescape(browser.get("/").get_data(as_text=True))
    for document in DOCUMENTS:
        served = browser.get(f"/documents/{document.slug}")
        assert served.status_code == 200 and served.mimetype == "application/pdf"
        assert served.headers["Content-Disposition"] == f'inline; filename="{document.slug}.pdf"'
        assert "Content-Security-Policy" not in served.headers  # the browser's viewer opens it
        size = human_size(len(served.data))
        assert size == f"{document.kib} Ko"  # the guide's weights
        block = page[page.index(f"<strong>{document.name}</strong>") :][:400]
        assert f"Poids du fichier : {size}" in block


def test_more_info_is_open_to_anyone(setup):
    _app, _url, kit, _user = setup
    page = kit.test_client().get("/en-savoir-plus").get_data(as_text=True)
    assert "21 jours" in page and "J'accède au service" in page
    home = kit.test_client().get("/").get_data(as_text=True)
    assert 'href="/en-savoir-plus"' in home and "Pour en savoir plus" in home
