// Forms whose answer can take seconds, marked `data-busy-message` (the SIRET lookup asks a
// remote company directory: up to 7 s). Once submitted, the page says what it is doing, in
// the form's `[data-busy-status]` (role="status": read out by screen readers), its submit
// buttons are disabled, and a second submit (a double click, Enter again) is ignored: the
// server gets the request once. Back on the page from the next one (the browser's back/forward
// cache keeps it as it was left), the form is usable again.
const forms = document.querySelectorAll("form[data-busy-message]");

function buttonsOf(form) {
  return form.querySelectorAll('button[type="submit"], input[type="submit"]');
}

function setBusy(form, busy) {
  form.dataset.busy = busy ? "1" : "";
  if (busy) form.setAttribute("aria-busy", "true");
  else form.removeAttribute("aria-busy");
  for (const button of buttonsOf(form)) button.disabled = busy;
  const status = form.querySelector("[data-busy-status]");
  if (status) status.textContent = busy ? form.dataset.busyMessage : "";
}

for (const form of forms) {
  form.addEventListener("submit", (event) => {
    if (form.dataset.busy === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.busy = "1";
    // The buttons are disabled once the submit event is over: a disabled submitter would be
    // left out of the request's fields.
    setTimeout(() => setBusy(form, true), 0);
  });
}

window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const form of forms) setBusy(form, false);
});
