// Passkey offer page and "Mes clés d'accès": create a passkey, and keep password managers in
// sync with the server through the Signal API where the browser has it.
import * as webauthn from "./webauthn.js";

const button = document.getElementById("passkey-register");
const message = document.getElementById("passkey-message");

// Conditional create (WebAuthn L3): on the page shown right after a password login, let the
// password manager that just filled the password save a passkey without a dialog.
let conditional = null; // { controller, done }

async function startConditionalCreate() {
  if (!button || button.dataset.conditionalCreate !== "1") return;
  const caps = await webauthn.capabilities();
  if (!caps.conditionalCreate) return;
  const controller = new AbortController();
  const done = webauthn
    .register({ conditional: true, signal: webauthn.timeoutSignal(controller) })
    .then(() => {
      window.location.assign(button.dataset.next || "/account/passkeys");
    })
    .catch(() => {
      /* no passkey saved silently: the buttons remain */
    });
  conditional = { controller, done };
}

async function stopConditionalCreate() {
  if (!conditional) return;
  const { controller, done } = conditional;
  conditional = null;
  controller.abort();
  await done;
}

async function registerPasskey() {
  webauthn.showMessage(message, "");
  button.disabled = true;
  await stopConditionalCreate();
  const controller = new AbortController();
  try {
    await webauthn.register({ signal: webauthn.timeoutSignal(controller) });
    window.location.assign(button.dataset.next || "/account/passkeys");
  } catch (error) {
    webauthn.showMessage(message, webauthn.frenchMessage(error));
    button.disabled = false;
  }
}

async function signal() {
  const holder = document.getElementById("passkey-signal");
  if (!holder || !webauthn.supported()) return;
  const rpId = holder.dataset.rpId;
  try {
    if (holder.dataset.removed && typeof PublicKeyCredential.signalUnknownCredential === "function") {
      await PublicKeyCredential.signalUnknownCredential({ rpId, credentialId: holder.dataset.removed });
    }
    if (typeof PublicKeyCredential.signalAllAcceptedCredentials === "function") {
      const accepted = holder.dataset.accepted ? holder.dataset.accepted.split(",") : [];
      await PublicKeyCredential.signalAllAcceptedCredentials({
        rpId,
        userId: holder.dataset.userId,
        allAcceptedCredentialIds: accepted,
      });
    }
  } catch (_) {
    /* the Signal API is a courtesy to password managers: never block the page */
  }
}

if (button) {
  if (!webauthn.supported()) {
    button.disabled = true;
    webauthn.showMessage(message, "Votre navigateur ne permet pas de créer une clé d'accès.");
  } else {
    button.addEventListener("click", registerPasskey);
    startConditionalCreate();
  }
}
signal();
