// « Créer mon compte sans mot de passe »: the password fields are of no use then; hide them
// (the server ignores them anyway when the box is checked).
const box = document.getElementById("passwordless");
const fields = document.getElementById("password-fields");

function sync() {
  if (!box || !fields) return;
  fields.hidden = box.checked;
}

if (box) {
  box.addEventListener("change", sync);
  sync();
}
