// « Confirmez votre identité » with a passkey: a passkey login of this very account in this
// browser (username-first: only its passkeys are offered). The server keeps the session and
// records the new proof of presence, then sends the browser on to the sensitive action.
import * as webauthn from "./webauthn.js";

const button = document.getElementById("reauth-passkey");
const message = document.getElementById("passkey-message");
const waiting =
  button && webauthn.supported() ? webauthn.waitingState(button, webauthn.WAITING_GET) : null;

async function confirm() {
  webauthn.showMessage(message, "");
  waiting.start();
  const controller = new AbortController();
  try {
    const result = await webauthn.authenticate({
      username: button.dataset.username,
      signal: webauthn.timeoutSignal(controller),
      next: button.dataset.next,
    });
    window.location.assign(result.redirect);
  } catch (error) {
    webauthn.showMessage(message, webauthn.frenchMessage(error));
    waiting.stop();
  }
}

if (button) {
  if (!webauthn.supported()) {
    button.disabled = true;
    webauthn.showMessage(message, "Votre navigateur ne permet pas d'utiliser une clé d'accès ici.");
  } else {
    button.addEventListener("click", confirm);
  }
}
