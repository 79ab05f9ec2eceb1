"""Layout of the main pages in headless Chromium, at a desktop (1280 px) and a phone (390 px) width.

Issue 12: on « Coordonnées de l'entreprise » the DSFR card stretched to its grid column
(`.fr-grid-row .fr-card { height: 100% }`), so « Retour » and « Valider » were drawn over the
footer and a tap in the middle of « Valider » opened the CGU link. Checked on every main page:

- no interactive element (link, button, field, tab) overlaps the footer (``#pied-de-page``);
- no two interactive elements overlap (by more than 1 px; invisible ones are ignored);
- no interactive element of a DSFR card comes above the card's title (« Mes clés d'accès »,
  « Mes sessions »: the DSFR orders a card's parts, and loose forms came first);
- no interactive element is cut off at the side (off the screen, or in a box that scrolls
  sideways with no cue, like a wide table on a phone), and the page is no wider than the screen.

And « Valider » is clicked where a person taps it, by position (the centre of its box): the
journey must go on to /certification. One browser context per width: the employer walks the
journey in it; the staff pages (they need a passkey session) use a session made over HTTP
whose cookie is handed to the same browser.

Set ``AUTHSERVER_LAYOUT_SHOTS=/some/dir`` to keep a full-page screenshot of every page checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import PASSWORD, Actions
from tests.e2e.conftest import Live
from tests.e2e.test_first_login_browser import (
    USERNAME,
    at,
    choose_certification,
    path_of,
    signup_and_activate_over_http,
    watch,
)
from tests.establishments.test_flow import active_establishments, spaced, staff
from tests.fixtures_services import PAGE_TIMEOUT_MS, add_virtual_authenticator

VIEWPORTS = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}

# The visible interactive elements that overlap the footer or each other (boxes in page
# coordinates). Hidden inputs, empty boxes and what lies outside the page (the DSFR skip
# links wait above it until focused) are seen by no one: ignored. An element inside another
# (a field in its label's link...) is not an overlap.
FAULTS_JS = """() => {
  const footer = document.querySelector("#pied-de-page");
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return { x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height };
  };
  const overlap = (a, b) => Math.min(
    Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x),
    Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
  const name = (el) => {
    const text = (el.innerText || el.value || el.getAttribute("aria-label") || el.name || "")
      .trim().replace(/\\s+/g, " ").slice(0, 50);
    return `<${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}> «${text}»`;
  };
  const seen = [];
  for (const el of document.querySelectorAll("a, button, input, select, textarea, [role=tab]")) {
    if (el.matches("input[type=hidden]")) continue;
    if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: false })) continue;
    const b = box(el);
    if (b.w < 1 || b.h < 1 || b.y + b.h <= 0 || b.x + b.w <= 0) continue;
    seen.push({ el, b });
  }
  const faults = [];
  const foot = box(footer);
  for (const { el, b } of seen) {
    if (!footer.contains(el) && overlap(b, foot) > 1) faults.push(`over the footer: ${name(el)}`);
  }
  for (let i = 0; i < seen.length; i++) {
    for (let j = i + 1; j < seen.length; j++) {
      const [a, b] = [seen[i], seen[j]];
      if (a.el.contains(b.el) || b.el.contains(a.el)) continue;
      if (overlap(a.b, b.b) > 1) faults.push(`overlap: ${name(a.el)} / ${name(b.el)}`);
    }
  }
  // Cut off at the side with no cue: outside the screen, or hidden by a box that scrolls or
  // clips sideways. Tab lists and scrollable regions (role=region) are announced as such.
  const clippedBy = (el, b) => {
    if (el.closest("[role=tablist], [role=region]")) return null;
    if (b.x < -1 || b.x + b.w > document.documentElement.clientWidth + 1) return "the screen";
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX === "visible") continue;
      const r = box(up);
      if (b.x < r.x - 1 || b.x + b.w > r.x + r.w + 1) return `<${up.tagName.toLowerCase()}>`;
    }
    return null;
  };
  for (const { el, b } of seen) {
    const by = clippedBy(el, b);
    if (by) faults.push(`cut off by ${by}: ${name(el)}`);
  }
  // A DSFR card orders its parts itself: its title must still come before what it describes.
  for (const card of document.querySelectorAll(".fr-card")) {
    const title = card.querySelector(".fr-card__title");
    if (!title) continue;
    const top = title.getBoundingClientRect().top;
    for (const { el, b } of seen) {
      if (card.contains(el) && !title.contains(el) && b.y - scrollY < top) {
        faults.push(`above its card's title « ${title.innerText.trim()} »: ${name(el)}`);
      }
    }
  }
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    faults.push(`page wider than the screen: ${root.scrollWidth} px > ${root.clientWidth} px`);
  }
  return faults;
}"""


class Pages:
    """The pages checked in one browser context, with the faults each showed."""

    def __init__(self, page: Any, live: Live, width: str) -> None:
        self.page = page
        self.live = live
        self.width = width
        self.faults: dict[str, list[str]] = {}
        self.shots = os.environ.get("AUTHSERVER_LAYOUT_SHOTS")

    def check(self, name: str, path: str | None = None) -> None:
        """Open ``path`` (or stay on the current page) and record its layout faults."""
        if path is not None:
            self.page.goto(self.live.base + path)
        self.page.wait_for_load_state("load")
        if self.shots:
            Path(self.shots).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=f"{self.shots}/{self.width}-{name}.png", full_page=True)
        faults = self.page.evaluate(FAULTS_JS)
        if faults:
            self.faults[f"{name} ({path_of(self.page)})"] = faults


def click_at_centre(page: Any, locator: Any) -> None:
    """Click where a person taps: the centre of the element's box, whatever is drawn there."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def staff_cookies(live: Live, username: str, role: str) -> list[dict[str, Any]]:
    """A staff member's passkey session (made over HTTP: quicker) as the browser's cookies."""
    client = staff(live.app, live.smtp, username, role).client
    # Werkzeug's test client names no public way to list its cookies.
    return [
        {"name": cookie.key, "value": cookie.value, "url": live.base}
        for cookie in client._cookies.values()
    ]


def employer_journey(pages: Pages) -> None:
    """Login → offer (`Activer`) → SIRET → company details (`Valider` by position) →
    certification by a counsellor → espace → account pages."""
    page, base = pages.page, pages.live.base
    found = active_establishments()[0]
    pages.check("signup", "/signup")
    pages.check("login", "/login")
    signup_and_activate_over_http(pages.live)
    # Only now: an authenticator without a passkey makes the login page's autofill request fail.
    add_virtual_authenticator(page)
    page.get_by_label("Identifiant", exact=True).fill(USERNAME)
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url(at("/passkeys/offer"))
    pages.check("offer")
    page.get_by_role("button", name="Activer", exact=True).click()
    page.wait_for_url(at("/establishment"))
    pages.check("establishment")

    page.get_by_label("Numéro de SIRET", exact=True).fill(spaced(found.siret))
    page.get_by_role("main").get_by_role("button", name="Suivant", exact=True).click()
    page.wait_for_url(at("/establishment/confirm"))
    pages.check("confirm")
    main = page.get_by_role("main")
    # The guide's order: the company's name, then its details, then the question.
    in_order = (found.name, "Code NAF", "Veuillez confirmer qu'il s'agit de votre établissement")
    tops = [main.get_by_text(text).first.bounding_box()["y"] for text in in_order]
    if tops != sorted(tops):
        pages.faults["confirm: name, details, question out of order"] = [str(tops)]
    click_at_centre(page, main.get_by_role("button", name="Valider", exact=True))
    page.wait_for_url(lambda url: urlsplit(url).path != "/establishment/confirm")
    if path_of(page) != "/certification":
        pages.faults["confirm: « Valider » tapped at its centre"] = [f"led to {page.url}"]
        page.goto(f"{base}/establishment/confirm")
        # Go on anyway (whatever covers the button), to check the pages after it.
        valider = page.get_by_role("main").get_by_role("button", name="Valider", exact=True)
        valider.dispatch_event("click")
        page.wait_for_url(at("/certification"))
    pages.check("certification")

    choose_certification(page, "Certification par un conseiller")
    page.get_by_role("main").get_by_role("link", name="Continuer ma navigation").click()
    page.wait_for_url(at("/espace"))
    pages.check("espace")
    pages.check("account", "/account")
    pages.check("passkeys", "/account/passkeys")
    # A second session (another browser, over HTTP): its card has a « Fermer cette session ».
    assert Actions(pages.live.app.test_client(), pages.live.smtp).login().status_code == 302
    pages.check("sessions", "/account/sessions")


@pytest.mark.e2e
@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_main_pages_layout_and_valider_by_position(browser: Any, live: Live, width: str) -> None:
    context = browser.new_context(viewport=VIEWPORTS[width])
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page = context.new_page()
        problems = watch(page)
        pages = Pages(page, live, width)
        employer_journey(pages)

        # Staff tools, in the same browser with each staff member's session in turn.
        for username, role, path in (
            ("camille.conseil", "counselor", "/counselor"),
            ("sacha.securite", "security", "/security"),
        ):
            context.clear_cookies()
            context.add_cookies(staff_cookies(live, username, role))
            pages.check(role, path)
            assert path_of(page) == path
        found = [f"{where}: {fault}" for where, faults in pages.faults.items() for fault in faults]
        assert not found, f"at {width} width:\n" + "\n".join(found)
        assert problems == [], problems
    finally:
        context.close()
