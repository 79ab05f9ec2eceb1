// Passkey ceremonies in the browser: WebAuthn Level 3 JSON methods where the browser has
// them, plain base64url conversion otherwise. Every request carries an AbortSignal.

const TIMEOUT_MS = 5 * 60 * 1000;
// Each call to the server: a server that never answers must not leave the page waiting.
const FETCH_TIMEOUT_MS = 30 * 1000;

export function b64urlToBuffer(value) {
  const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

export function bufferToB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function supported() {
  return typeof window.PublicKeyCredential === "function" && !!navigator.credentials;
}

export async function capabilities() {
  if (!supported()) return {};
  if (typeof PublicKeyCredential.getClientCapabilities === "function") {
    try {
      return await PublicKeyCredential.getClientCapabilities();
    } catch (_) {
      /* fall through to feature detection */
    }
  }
  const caps = {};
  try {
    if (typeof PublicKeyCredential.isConditionalMediationAvailable === "function") {
      caps.conditionalGet = await PublicKeyCredential.isConditionalMediationAvailable();
    }
    if (typeof PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable === "function") {
      caps.userVerifyingPlatformAuthenticator =
        await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable();
    }
  } catch (_) {
    /* unknown: say nothing rather than something wrong */
  }
  return caps;
}

function descriptorsFromJSON(list) {
  return (list || []).map((item) => ({ ...item, id: b64urlToBuffer(item.id) }));
}

export function creationOptionsFromJSON(json) {
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBuffer(json.challenge),
    user: { ...json.user, id: b64urlToBuffer(json.user.id) },
    excludeCredentials: descriptorsFromJSON(json.excludeCredentials),
  };
}

export function requestOptionsFromJSON(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBuffer(json.challenge),
    allowCredentials: descriptorsFromJSON(json.allowCredentials),
  };
}

export function credentialToJSON(credential) {
  if (typeof credential.toJSON === "function") {
    try {
      return credential.toJSON();
    } catch (_) {
      /* some password managers return objects whose toJSON throws */
    }
  }
  const response = credential.response;
  const json = {
    id: credential.id,
    rawId: bufferToB64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults
      ? credential.getClientExtensionResults()
      : {},
    response: { clientDataJSON: bufferToB64url(response.clientDataJSON) },
  };
  if (response.attestationObject) {
    json.response.attestationObject = bufferToB64url(response.attestationObject);
    json.response.transports = response.getTransports ? response.getTransports() : [];
  } else {
    json.response.authenticatorData = bufferToB64url(response.authenticatorData);
    json.response.signature = bufferToB64url(response.signature);
    if (response.userHandle) json.response.userHandle = bufferToB64url(response.userHandle);
  }
  return json;
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// An AbortSignal for one fetch: aborted by the caller's signal, or after FETCH_TIMEOUT_MS.
// (A timer rather than AbortSignal.timeout, so that a test's fake clock drives it too.)
function fetchSignal(signal) {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException("Délai dépassé", "TimeoutError")),
    FETCH_TIMEOUT_MS,
  );
  const follow = () => controller.abort(signal.reason);
  if (signal) {
    if (signal.aborted) follow();
    else signal.addEventListener("abort", follow, { once: true });
  }
  const done = () => {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", follow);
  };
  return { signal: controller.signal, done };
}

// The JSON API sits beside this file's folder (static/js/ → webauthn/): the same under a
// mount point (a proxy's /portail/), where root-absolute paths would miss the app.
const API_ROOT = new URL("../../webauthn/", import.meta.url);

export function api(call) {
  return new URL(call, API_ROOT).pathname;
}

export async function postJSON(url, body, { signal } = {}) {
  const call = fetchSignal(signal);
  let response;
  let data = {};
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body || {}),
      signal: call.signal,
    });
    try {
      data = await response.json();
    } catch (error) {
      if (call.signal.aborted) throw call.signal.reason;
      data = {};
    }
  } finally {
    call.done();
  }
  if (!response.ok) {
    const error = new Error(data.message || "Le serveur n'a pas pu traiter la demande.");
    error.serverError = data.error || "server_error";
    throw error;
  }
  return data;
}

export function frenchMessage(error) {
  if (error && error.serverError) return error.message;
  switch (error && error.name) {
    case "NotAllowedError":
      return "Opération annulée ou délai dépassé. Vous pouvez réessayer quand vous le souhaitez.";
    case "InvalidStateError":
      return "Cet appareil possède déjà une clé d'accès pour votre compte.";
    case "TimeoutError":
      return "Délai dépassé : l'opération a été interrompue. Vous pouvez réessayer.";
    case "AbortError":
      return "Opération interrompue.";
    case "SecurityError":
      return "Cette page ne peut pas utiliser de clé d'accès (adresse du site non reconnue).";
    case "NotSupportedError":
      return "Votre appareil ne permet pas de créer ce type de clé d'accès.";
    default:
      return "La clé d'accès n'a pas pu être utilisée. Réessayez ou connectez-vous avec votre mot de passe.";
  }
}

export function timeoutSignal(controller) {
  const timer = setTimeout(
    () => controller.abort(new DOMException("Délai dépassé", "TimeoutError")),
    TIMEOUT_MS,
  );
  controller.signal.addEventListener("abort", () => clearTimeout(timer));
  return controller.signal;
}

export async function register({ name, conditional = false, signal } = {}) {
  // The server verifies a conditional create without UP/UV (the browser asks for neither),
  // so it must know which kind of ceremony this challenge is for.
  const optionsJSON = await postJSON(
    api("register/options"),
    conditional ? { mediation: "conditional" } : {},
    { signal },
  );
  const publicKey = creationOptionsFromJSON(optionsJSON);
  const request = { publicKey, signal };
  if (conditional) request.mediation = "conditional";
  const credential = await navigator.credentials.create(request);
  const body = { credential: credentialToJSON(credential) };
  if (name) body.name = name;
  // The authenticator made the passkey: let the server store it even if the page's signal
  // fires now (only the call's own timeout applies).
  return postJSON(api("register/verify"), body);
}

// « J'ai perdu ma clé d'accès »: a new passkey from an e-mailed link (its token), by a
// browser with no session; the server answers with where to go, logged in.
export async function recover({ token, signal } = {}) {
  const optionsJSON = await postJSON(api("recovery/options"), { token }, { signal });
  const credential = await navigator.credentials.create({
    publicKey: creationOptionsFromJSON(optionsJSON),
    signal,
  });
  return postJSON(api("recovery/verify"), { token, credential: credentialToJSON(credential) });
}

export async function authenticate({ username, conditional = false, signal, next } = {}) {
  const optionsJSON = await postJSON(
    api("login/options"),
    username ? { username } : {},
    { signal },
  );
  const publicKey = requestOptionsFromJSON(optionsJSON);
  const request = { publicKey, signal };
  if (conditional) request.mediation = "conditional";
  const credential = await navigator.credentials.get(request);
  const body = { credential: credentialToJSON(credential) };
  if (next) body.next = next;
  try {
    return await postJSON(api("login/verify"), body); // as above: only its own timeout
  } catch (error) {
    // Which passkey the server refused, for the Signal API (see signalUnknown).
    error.credentialId = credential.id;
    error.rpId = optionsJSON.rpId || location.hostname;
    error.discoverable = !username;
    throw error;
  }
}

// The server does not know this passkey (deleted, or never registered): tell the password
// manager, which may then stop offering it (WebAuthn L3 Signal API, where available). Only
// after a discoverable ceremony: in a username-first one, "unknown" may only mean "not this
// account's", and another account's live passkey must not be hidden.
export async function signalUnknown(error) {
  if (!error || error.serverError !== "unknown_credential") return;
  if (!error.discoverable || !error.credentialId) return;
  if (!supported() || typeof PublicKeyCredential.signalUnknownCredential !== "function") return;
  try {
    await PublicKeyCredential.signalUnknownCredential({
      rpId: error.rpId,
      credentialId: error.credentialId,
    });
  } catch (_) {
    /* a courtesy to the password manager: never block the page */
  }
}

export function showMessage(element, text) {
  if (!element) return;
  element.textContent = text;
  element.hidden = !text;
}

// « En attente de votre appareil » while a ceremony started by a button runs: the browser's
// own dialog may be small, behind the window, or on the phone. The button is disabled and a
// message says what the browser waits for, in a role="status" element made when the page
// loads (a live region must exist before its text changes to be read out), placed before the
// page's #passkey-message (which is for errors) or else right after the button.
export const WAITING_GET =
  "En attente de votre appareil… Suivez les indications de votre navigateur pour utiliser " +
  "votre clé d'accès (empreinte digitale, reconnaissance faciale, code PIN ou téléphone).";
export const WAITING_CREATE =
  "En attente de votre appareil… Suivez les indications de votre navigateur pour créer " +
  "votre clé d'accès (empreinte digitale, reconnaissance faciale, code PIN ou téléphone).";

export function waitingState(button, text) {
  const status = document.createElement("p");
  status.id = `${button.id}-waiting`;
  status.className = "fr-text--sm app-busy";
  status.setAttribute("role", "status");
  const errors = document.getElementById("passkey-message");
  if (errors) errors.before(status);
  else button.after(status);
  return {
    start() {
      button.disabled = true;
      button.setAttribute("aria-describedby", status.id);
      status.textContent = text;
    },
    stop() {
      button.disabled = false;
      button.removeAttribute("aria-describedby");
      status.textContent = "";
    },
  };
}
