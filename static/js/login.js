// Login page: passkeys in the Identifiant field's autofill (conditional mediation, started
// as soon as the page loads) and the "Se connecter sans mot de passe" button.
import * as webauthn from "./webauthn.js";

const button = document.getElementById("passkey-login");
const message = document.getElementById("passkey-message");
const usernameField = document.getElementById("username");
const nextField = document.querySelector('#login-form input[name="next"]');
const next = nextField ? nextField.value : undefined;

let pending = null; // the AbortController of the running request

function abortPending() {
  if (pending) {
    pending.abort();
    pending = null;
  }
}

async function startConditional() {
  const caps = await webauthn.capabilities();
  if (!caps.conditionalGet) return;
  abortPending();
  const controller = new AbortController();
  pending = controller;
  try {
    const result = await webauthn.authenticate({
      conditional: true,
      signal: webauthn.timeoutSignal(controller),
      next,
    });
    window.location.assign(result.redirect);
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    webauthn.showMessage(message, webauthn.frenchMessage(error));
  }
}

async function startModal() {
  webauthn.showMessage(message, "");
  abortPending();
  const controller = new AbortController();
  pending = controller;
  const username = usernameField && usernameField.value.trim() ? usernameField.value.trim() : undefined;
  button.disabled = true;
  try {
    const result = await webauthn.authenticate({
      username,
      signal: webauthn.timeoutSignal(controller),
      next,
    });
    window.location.assign(result.redirect);
  } catch (error) {
    if (!(controller.signal.aborted && pending !== controller)) {
      webauthn.showMessage(message, webauthn.frenchMessage(error));
    }
    button.disabled = false;
    startConditional();
  }
}

if (button) {
  if (!webauthn.supported()) {
    button.disabled = true;
    webauthn.showMessage(
      message,
      "Votre navigateur ne permet pas la connexion sans mot de passe. Utilisez votre mot de passe.",
    );
  } else {
    button.addEventListener("click", startModal);
    startConditional();
  }
}
