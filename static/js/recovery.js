// « Créer une nouvelle clé d'accès » from a recovery link (or the first passkey of a
// passwordless sign-up, on the activation page): one button, one ceremony.
import * as webauthn from "./webauthn.js";

const button = document.getElementById("recovery-register");
const message = document.getElementById("recovery-message");

if (button && !webauthn.supported()) {
  button.disabled = true;
  webauthn.showMessage(
    message,
    "Ce navigateur ne permet pas de créer une clé d'accès. Ouvrez le lien dans un navigateur " +
      "récent (Chrome, Edge, Firefox, Safari).",
  );
} else if (button) {
  const waiting = webauthn.waitingState(button, webauthn.WAITING_CREATE);
  button.addEventListener("click", async () => {
    webauthn.showMessage(message, "");
    waiting.start();
    const controller = new AbortController();
    try {
      const answer = await webauthn.recover({
        token: button.dataset.token,
        signal: webauthn.timeoutSignal(controller),
      });
      window.location.assign(answer.redirect);
    } catch (error) {
      waiting.stop();
      webauthn.showMessage(message, webauthn.frenchMessage(error));
    }
  });
  // The button comes disabled from the server: usable once this handler is in place.
  button.disabled = false;
}
