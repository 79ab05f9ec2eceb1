// The error summary of a refused form (templates/macros/forms.html, `error_summary`).
//
// When the page loads, the focus goes to the summary: a screen reader reads the errors first,
// a phone shows them at the top, and Tab goes on from there. Each link moves the focus to its
// field (a plain #anchor only scrolls, and the focus would stay on the link) and scrolls the
// field's label (or its group's legend) into view with it, so that the question is seen too.
const summary = document.querySelector("[data-error-summary]");

function labelFor(field) {
  const group = field.closest("fieldset");
  if (group && (field.type === "radio" || field.type === "checkbox")) {
    const legend = group.querySelector("legend");
    if (legend) return legend;
  }
  return (field.labels && field.labels[0]) || field;
}

function follow(event) {
  const link = event.target.closest('a[href^="#"]');
  if (!link || !summary.contains(link)) return;
  const field = document.getElementById(decodeURIComponent(link.hash.slice(1)));
  if (!field) return;
  event.preventDefault();
  labelFor(field).scrollIntoView({ block: "start" });
  field.focus({ preventScroll: true });
}

if (summary) {
  summary.addEventListener("click", follow);
  summary.focus();
}
