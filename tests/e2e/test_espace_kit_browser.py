"""The guide's route, in headless Chromium: « Mon espace personnel » → « Mes services
administratifs » → « Licencier pour motif économique » → the CSP page → « J'accède au service »
→ the CSP kit (its own process, registered as `make run` registers it) → a document downloaded,
of the weight the page shows; back to the espace. At 1280 px, then at 390 px, where every tab
of the espace must be on screen; axe-core finds nothing on the pages on the way.

The services file is the shipped one with the kit's address changed to the test's port
(AUTHSERVER_SERVICES), so the links followed are the configured ones.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from authserver import settings_of
from authserver.establishments.portal_services import DEFAULT_PATH
from examples.csp_kit.devserver import DEFAULT_KIT_URL, ensure_client
from examples.csp_kit.documents import human_size
from tests.e2e.helpers import Watch, at, password_login, path_of
from tests.e2e.test_accessibility_browser import violations
from tests.establishments.test_flow import (
    _decide_online,
    _start_online,
    active_establishments,
    attach,
    employer,
    location,
)
from tests.services import LiveServer, SMTPServer, free_port, wait_for_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
USERNAME = "martin.dupont"
DOCUMENTS = {
    "Le document d'information": "332 Ko",
    "La notice d'information salarié": "688 Ko",
    "Le bulletin d'acceptation": "596 Ko",
    "La demande d'allocations": "869 Ko",
}


@dataclass
class Portal:
    app: Flask
    auth_url: str
    kit_url: str


@pytest.fixture
def portal(make_app, smtp: SMTPServer, tmp_path: Path) -> Iterator[Portal]:
    port, kit_port = free_port(), free_port()
    auth_url, kit_url = f"http://localhost:{port}", f"http://localhost:{kit_port}"
    services = DEFAULT_PATH.read_text(encoding="utf-8").replace(DEFAULT_KIT_URL, kit_url)
    (tmp_path / "services.json").write_text(services, encoding="utf-8")
    app = make_app(
        AUTHSERVER_BASE_URL=auth_url, AUTHSERVER_SERVICES=str(tmp_path / "services.json")
    )
    live = LiveServer(app, port=port).start()
    client = ensure_client(settings_of(app), kit_url)  # what `make run` does
    log = open(tmp_path / "csp_kit.log", "wb")  # noqa: SIM115
    kit = subprocess.Popen(
        [sys.executable, "-m", "examples.csp_kit"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "CSPKIT_ISSUER": auth_url,
            "CSPKIT_BASE_URL": kit_url,
            "CSPKIT_CLIENT_ID": client["client_id"],
            "CSPKIT_CLIENT_SECRET": client["client_secret"],
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(kit_port, timeout=20)
        yield Portal(app, auth_url, kit_url)
    finally:
        kit.terminate()
        kit.wait(timeout=10)
        log.close()
        live.stop()
        if kit.returncode not in (0, -15):
            print((tmp_path / "csp_kit.log").read_text(errors="replace"))


@pytest.fixture
def certified_employer(portal: Portal, smtp: SMTPServer) -> Portal:
    """Signed up, activated, SIRET attached, online certification approved (over HTTP)."""
    actions = employer(portal.app, smtp, USERNAME)
    attach(actions, active_establishments()[0].siret)
    assert location(_decide_online(actions, _start_online(actions), "approved")) == "/espace"
    return portal


def follow_the_guide_to_the_kit(page, portal: Portal, found: list[str]) -> None:
    """From the espace: the third tab, « Licencier pour motif économique », « J'accède au
    service »; ends on the kit's documents (the OIDC round trip happens on the way). axe-core
    looks at each page on the way (its findings go to ``found``)."""
    page.goto(portal.auth_url + "/espace")
    found.extend(violations(page))
    tab = page.get_by_role("tab", name="Mes services administratifs", exact=True)
    tab.click()
    panel = page.locator(f"#{tab.get_attribute('aria-controls')}")
    link = panel.get_by_role("link", name="Licencier pour motif économique")
    link.wait_for()
    found.extend(violations(page))
    link.click()
    page.wait_for_url(at("/espace/services/licencier-motif-economique"))
    page.get_by_role("heading", name="Les avantages").wait_for()
    found.extend(violations(page))
    page.get_by_role("link", name="J'accède au service").click()
    page.wait_for_url(lambda url: url.startswith(portal.kit_url + "/") and "callback" not in url)
    page.locator("#documents").wait_for()
    found.extend(violations(page))


def test_certified_employer_goes_from_the_espace_to_the_kit_and_downloads(
    page, certified_employer: Portal
) -> None:
    portal = certified_employer
    watch = Watch(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    if password_login(page, portal.auth_url) == "/passkeys/offer":
        page.get_by_role("button", name="Peut-être plus tard").click()
    page.wait_for_url(at("/espace"))

    found: list[str] = []
    follow_the_guide_to_the_kit(page, portal, found)
    items = page.locator("#documents > li")
    assert items.count() == 4
    for index in range(4):
        text = items.nth(index).inner_text()
        name = next(name for name in DOCUMENTS if name in text)
        # The weight shown is the one of the bytes served, and the guide's.
        href = (
            items.nth(index).get_by_role("link", name=f"Télécharger {name}").get_attribute("href")
        )
        served = page.request.get(portal.kit_url + href)
        assert served.ok and served.headers["content-type"] == "application/pdf"
        assert f"Poids du fichier : {human_size(len(served.body()))}" in text
        assert human_size(len(served.body())) == DOCUMENTS[name]
        assert items.nth(index).get_by_role("link", name=f"Visualiser {name}").is_visible()
    assert "Connexion : mot de passe" not in page.content()  # no debug line

    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger Le bulletin d'acceptation").click()
    body = Path(download.value.path()).read_bytes()
    assert body.startswith(b"%PDF-1.4") and body.rstrip().endswith(b"%%EOF")
    assert human_size(len(body)) == "596 Ko"

    # The way back to the espace.
    page.get_by_role("banner").get_by_role("link", name="Mon espace personnel").click()
    page.wait_for_url(at("/espace"))

    # On a phone: every tab of the espace on screen, the route followed again.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(portal.auth_url + "/espace")
    for name in ("Accueil", "Mes services de recrutement", "Mes services administratifs"):
        box = page.get_by_role("tab", name=name, exact=True).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (name, box)
    follow_the_guide_to_the_kit(page, portal, found)
    button = page.get_by_role("link", name="Télécharger La demande d'allocations")
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    with page.expect_download() as download:
        button.click()
    assert human_size(len(Path(download.value.path()).read_bytes())) == "869 Ko"
    assert urlsplit(page.url).netloc == urlsplit(portal.kit_url).netloc
    assert path_of(page) == "/"
    page.goto(portal.auth_url + "/espace/acces-directs")
    found.extend(violations(page))
    assert found == []
    assert watch.unexpected() == []
