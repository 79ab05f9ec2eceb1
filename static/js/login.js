// Login page: passkeys in the Identifiant field's autofill (conditional mediation, started
// as soon as the page loads) and the "Se connecter sans mot de passe" button.
//
// The autofill request must stay alive as long as the page is open: it is started again when
// its own 5-minute timeout ends, and after the server refused the passkey the user picked.
// After a refusal it restarts once the user is back on the Identifiant field (at once when
// the field still has the focus, as after picking a suggestion): a restarted request only
// waits for the user's choice, but never turns into a loop of automatic attempts.
import * as webauthn from "./webauthn.js";

const button = document.getElementById("passkey-login");
const message = document.getElementById("passkey-message");
const usernameField = document.getElementById("username");
const nextField = document.querySelector('#login-form input[name="next"]');
const next = nextField ? nextField.value : undefined;

const waiting =
  button && webauthn.supported() ? webauthn.waitingState(button, webauthn.WAITING_GET) : null;

let pending = null; // the AbortController of the running request
let modal = false; // whether that request is the button's
let rearmed = false; // a restart waits for the user on the Identifiant field

function abortPending() {
  if (pending) {
    const controller = pending;
    pending = null;
    controller.abort();
  }
}

function timedOut(controller, error) {
  const reason = controller.signal.reason;
  return (reason && reason.name === "TimeoutError") || (error && error.name === "TimeoutError");
}

function restartWhenBack() {
  if (!usernameField) return; // no field, no autofill
  if (document.activeElement === usernameField) {
    startConditional();
    return;
  }
  if (rearmed) return;
  rearmed = true;
  const back = () => {
    rearmed = false;
    for (const type of ["focus", "pointerdown", "input"]) {
      usernameField.removeEventListener(type, back);
    }
    if (!pending) startConditional();
  };
  for (const type of ["focus", "pointerdown", "input"]) usernameField.addEventListener(type, back);
}

async function startConditional() {
  const caps = await webauthn.capabilities();
  if (!caps.conditionalGet) return;
  if (pending && modal) return; // the button's request runs; it restarts autofill when done
  abortPending();
  const controller = new AbortController();
  pending = controller;
  modal = false;
  try {
    const result = await webauthn.authenticate({
      conditional: true,
      signal: webauthn.timeoutSignal(controller),
      next,
    });
    window.location.assign(result.redirect);
  } catch (error) {
    if (pending !== controller) return; // replaced by the button's request
    pending = null;
    if (timedOut(controller, error)) {
      startConditional(); // its own 5 minutes are over: nothing was refused, wait again
      return;
    }
    if (error.name === "AbortError") return;
    // The browser ended the autofill request on its own (no passkey picked, none available):
    // nothing the user did, so nothing to say; wait for them on the Identifiant field.
    if (!error.serverError && error.name === "NotAllowedError") {
      restartWhenBack();
      return;
    }
    webauthn.showMessage(message, webauthn.frenchMessage(error));
    await webauthn.signalUnknown(error);
    restartWhenBack();
  }
}

async function startModal() {
  webauthn.showMessage(message, "");
  abortPending();
  const controller = new AbortController();
  pending = controller;
  modal = true;
  const username = usernameField && usernameField.value.trim() ? usernameField.value.trim() : undefined;
  waiting.start();
  try {
    const result = await webauthn.authenticate({
      username,
      signal: webauthn.timeoutSignal(controller),
      next,
    });
    window.location.assign(result.redirect);
  } catch (error) {
    if (pending === controller) pending = null;
    webauthn.showMessage(message, webauthn.frenchMessage(error));
    await webauthn.signalUnknown(error);
    waiting.stop();
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
