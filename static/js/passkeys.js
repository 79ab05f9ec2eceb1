// Passkey offer page and "Mes clés d'accès": create a passkey, and keep password managers in
// sync with the server through the Signal API where the browser has it.
import * as webauthn from "./webauthn.js";

const button = document.getElementById("passkey-register");
const message = document.getElementById("passkey-message");
const hint = document.getElementById("passkey-hint");
const waiting =
  button && webauthn.supported() ? webauthn.waitingState(button, webauthn.WAITING_CREATE) : null;

// What this device can do (getClientCapabilities), in words: the platform's own unlock, or
// the phone over a QR code when the computer has none.
const HINTS = {
  platform:
    "Votre appareil est compatible : vous utiliserez son déverrouillage (empreinte digitale, " +
    "reconnaissance faciale ou code PIN).",
  phone:
    "Votre ordinateur n'a pas de déverrouillage compatible : utilisez votre smartphone sans " +
    "télécharger d'application. Au moment d'activer, choisissez votre téléphone et scannez le " +
    "QR code affiché.",
  none:
    "Cet appareil n'a pas de déverrouillage compatible et ne peut pas joindre votre smartphone " +
    "(Bluetooth indisponible) : utilisez une clé de sécurité, ou activez la connexion sans mot " +
    "de passe depuis votre smartphone.",
};

async function explain() {
  if (!hint || !button || !webauthn.supported()) return;
  const caps = await webauthn.capabilities();
  const platform = caps.userVerifyingPlatformAuthenticator;
  let text = "";
  if (platform === true) text = HINTS.platform;
  else if (platform === false) text = caps.hybridTransport === false ? HINTS.none : HINTS.phone;
  webauthn.showMessage(hint, text);
}

// Conditional create (WebAuthn L3): on the page shown right after a password login, let the
// password manager that just filled the password save a passkey without a dialog.
let conditional = null; // { controller, done }

async function startConditionalCreate() {
  if (!button || button.dataset.conditionalCreate !== "1") return;
  const caps = await webauthn.capabilities();
  if (!caps.conditionalCreate || button.disabled) return; // `Activer` was clicked meanwhile
  const controller = new AbortController();
  const done = webauthn
    .register({ conditional: true, signal: webauthn.timeoutSignal(controller) })
    .then(() => {
      window.location.assign(button.dataset.next || new URL("../../account/passkeys", import.meta.url).pathname);
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
  waiting.start();
  await stopConditionalCreate();
  const controller = new AbortController();
  try {
    await webauthn.register({ signal: webauthn.timeoutSignal(controller) });
    window.location.assign(button.dataset.next || new URL("../../account/passkeys", import.meta.url).pathname);
  } catch (error) {
    if (error.serverError === "reauth_required") {
      // The session is older than a few minutes: confirm who you are, then come back here.
      const reauth = new URL("../../account/reauth", import.meta.url);
      reauth.searchParams.set("next", window.location.pathname + window.location.search);
      window.location.assign(reauth.pathname + reauth.search);
      return;
    }
    webauthn.showMessage(message, webauthn.frenchMessage(error));
    waiting.stop();
  }
}

async function signal() {
  const holder = document.getElementById("passkey-signal");
  if (!holder || !webauthn.supported()) return;
  const rpId = holder.dataset.rpId;
  const list = (value) => (value ? value.split(",").filter(Boolean) : []);
  const accepted = list(holder.dataset.accepted);
  // Deleted from this account here (the server keeps them, never the URL), still not live.
  const removed = list(holder.dataset.removed).filter((id) => !accepted.includes(id));
  try {
    if (typeof PublicKeyCredential.signalUnknownCredential === "function") {
      for (const credentialId of removed) {
        await PublicKeyCredential.signalUnknownCredential({ rpId, credentialId });
      }
    }
    if (typeof PublicKeyCredential.signalAllAcceptedCredentials === "function") {
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
explain();
signal();
