"""Browser helpers for the passkey tests: pages by their French labels, the DevTools virtual
authenticator, and a watcher for console errors, CSP violations and WebAuthn calls."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import PASSWORD

USERNAME = "martin.dupont"

# Injected before every document (DevTools, so the page's CSP does not apply): reports CSP
# violations and records each navigator.credentials call with its mediation and outcome.
RECORDER_JS = """
(() => {
  const report = (item) => { try { window.__authserverReport(item); } catch (_) {} };
  document.addEventListener("securitypolicyviolation", (e) => {
    report({ kind: "csp", text: `${e.violatedDirective} blocked ${e.blockedURI}` });
  });
  const calls = (window.__passkeyCalls = []);
  const record = (owner, method, describe) => {
    if (!owner || typeof owner[method] !== "function") return;
    const original = owner[method].bind(owner);
    owner[method] = (options) => {
      const call = { kind: "webauthn", method, path: location.pathname, outcome: "started",
                     ...describe(options || {}) };
      const pending = original(options);
      calls.push(call);
      const settle = (outcome) => { call.outcome = outcome; report({ ...call }); };
      return pending.then(
        (value) => { settle("ok"); return value; },
        (error) => { settle(error.name); throw error; },
      );
    };
  };
  const ceremony = (options) => ({
    mediation: options.mediation || "",
    allow: ((options.publicKey || {}).allowCredentials || []).length,
  });
  record(navigator.credentials, "get", ceremony);
  record(navigator.credentials, "create", ceremony);
  const signal = (options) => ({ credentialId: options.credentialId || "" });
  record(window.PublicKeyCredential, "signalUnknownCredential", signal);
  record(window.PublicKeyCredential, "signalAllAcceptedCredentials", signal);
})();
"""

CONDITIONAL_STARTED = """() => window.__passkeyCalls.some(
  (c) => c.method === "get" && c.mediation === "conditional")"""

MODAL_CREATE_STARTED = """() => window.__passkeyCalls.some(
  (c) => c.method === "create" && c.mediation === "")"""

SIGNALS_DONE = """() => ["signalUnknownCredential", "signalAllAcceptedCredentials"].every(
  (m) => window.__passkeyCalls.some((c) => c.method === m && c.outcome !== "started"))"""

ACCEPTED_SIGNALLED = """() => window.__passkeyCalls.some(
  (c) => c.method === "signalAllAcceptedCredentials" && c.outcome !== "started")"""

UNKNOWN_SIGNALLED_ON_LOGIN = """() => window.__passkeyCalls.some(
  (c) => c.method === "signalUnknownCredential" && c.path === "/login"
    && c.outcome !== "started")"""

CONDITIONAL_GETS = """() => window.__passkeyCalls.filter(
  (c) => c.method === "get" && c.mediation === "conditional").length"""

CONDITIONAL_CREATE_STARTED = """() => window.__passkeyCalls.some(
  (c) => c.method === "create" && c.mediation === "conditional")"""

HAS_CONDITIONAL_GET = """async () => !!window.PublicKeyCredential
  && !!(await PublicKeyCredential.getClientCapabilities()).conditionalGet"""

HTTP_ERROR = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


class Watch:
    """Everything the pages of one test said that a person should never cause."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        self.calls: list[dict[str, Any]] = []  # finished WebAuthn calls, every page
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.expose_function("__authserverReport", self._report)
        page.add_init_script(RECORDER_JS)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _report(self, item: dict[str, Any]) -> None:
        if item.get("kind") == "csp":
            self.problems.append(f"CSP violation: {item['text']}")
        else:
            self.calls.append(item)

    def allow_http_errors(self) -> None:
        """A refused ceremony answers 4xx, which Chromium logs as a console error."""
        self.allowed.append(HTTP_ERROR)

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]

    def succeeded(self, method: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["method"] == method and c["outcome"] == "ok"]


def at(path: str):
    """A wait_for_url predicate on the exact path (a glob on "**/espace" also matches
    "/passkeys/offer?next=/espace")."""
    return lambda url: urlsplit(url).path == path


def path_of(page) -> str:
    return urlsplit(page.url).path


# Pages on the way to the logged-in landing page (/espace, or the onboarding's next step).
NOT_LANDING = {"/login", "/logout", "/passkeys/offer", "/account/reauth"}


def wait_logged_in(page) -> str:
    """Wait for the landing page of a successful login; return its path."""
    page.wait_for_url(lambda url: urlsplit(url).path not in NOT_LANDING)
    page.get_by_role("button", name="Se déconnecter").wait_for()
    return path_of(page)


# --- The virtual authenticator ----------------------------------------------------------------


def credentials(cdp, aid: str) -> list[dict[str, Any]]:
    return cdp.send("WebAuthn.getCredentials", {"authenticatorId": aid})["credentials"]


def add_credential(cdp, aid: str, credential: dict[str, Any], **changes: Any) -> None:
    cdp.send(
        "WebAuthn.addCredential",
        {"authenticatorId": aid, "credential": {**credential, **changes}},
    )


def raw_id(credential: dict[str, Any]) -> bytes:
    """DevTools gives ids in standard base64 with padding."""
    return base64.b64decode(credential["credentialId"])


def set_presence(cdp, aid: str, enabled: bool) -> None:
    cdp.send(
        "WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": aid, "enabled": enabled}
    )


# --- Pages --------------------------------------------------------------------------------------


def password_login(page, base: str, username: str = USERNAME, password: str = PASSWORD) -> str:
    """Log in by the login page's labels; return the path landed on."""
    if path_of(page) != "/login":
        page.goto(base + "/login")
    page.get_by_label("Identifiant", exact=True).fill(username)
    page.get_by_label("Mot de passe", exact=True).fill(password)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/login")
    return path_of(page)


def enroll_from_offer(page, base: str) -> str:
    """Password login, then `Activer` on the offer page; returns the landing path."""
    assert password_login(page, base) == "/passkeys/offer"
    next_path = page.get_by_role("button", name="Activer", exact=True).get_attribute("data-next")
    page.get_by_role("button", name="Activer", exact=True).click()
    assert wait_logged_in(page) == urlsplit(next_path).path
    return path_of(page)


def logout(page) -> None:
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url(at("/login"))


def logout_into_autofill(page, reload: bool = False):
    """Log out (or reload /login); the login page's conditional request answers at once
    (~100 ms) with the authenticator's passkey. Returns the /webauthn/login/verify response."""
    with page.expect_response(lambda r: r.url.endswith("/webauthn/login/verify")) as verify:
        if reload:
            page.reload()
        else:
            page.get_by_role("button", name="Se déconnecter").click()
    return verify.value


def logout_keeping_autofill_pending(page, cdp, aid: str) -> None:
    """Log out while the authenticator does not answer by itself, so that the login page's
    conditional request stays pending (it would otherwise log in within ~100 ms); once it
    has started, let the authenticator answer again: the next ceremony is the test's own."""
    set_presence(cdp, aid, False)
    logout(page)
    if page.evaluate(HAS_CONDITIONAL_GET):
        page.wait_for_function(CONDITIONAL_STARTED)
    set_presence(cdp, aid, True)


def login_with_button(page, username: str | None = None) -> dict[str, Any]:
    """`Se connecter sans mot de passe` on the login page (logged out, on /login); waits for the
    landing page and returns the body the page sent to /webauthn/login/options."""
    if username:
        page.get_by_label("Identifiant", exact=True).fill(username)
    with page.expect_request(lambda r: r.url.endswith("/webauthn/login/options")) as request:
        page.get_by_role("button", name="Se connecter sans mot de passe", exact=True).click()
    wait_logged_in(page)
    return request.value.post_data_json


def override_bits(cdp, aid: str, **bits: bool) -> None:
    """WebAuthn.setResponseOverrideBits; the bits not named are cleared."""
    names = ("isBogusSignature", "isBadUV", "isBadUP")
    values = {name: bool(bits.get(name, False)) for name in names}
    cdp.send("WebAuthn.setResponseOverrideBits", {"authenticatorId": aid, **values})


def fake_capabilities(page, **capabilities: bool) -> None:
    """Make getClientCapabilities() answer these (for what Chromium here cannot be: a PC
    without a platform authenticator but with Bluetooth for a phone)."""
    page.add_init_script(
        "(() => { const caps = " + json.dumps(capabilities) + ";"
        " if (window.PublicKeyCredential) PublicKeyCredential.getClientCapabilities ="
        " async () => ({ ...caps }); })();"
    )


def passkey_hint(page):
    """What the offer and passkeys pages say this device can do."""
    return page.locator("#passkey-hint")


def passkey_message(page):
    """The page's passkey message (login, offer and passkeys pages)."""
    return page.locator("#passkey-message")
