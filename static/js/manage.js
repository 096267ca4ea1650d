// Incident manager: the "return the components to operational" choice only matters when resolving,
// so it shows only while the update's status is Resolved. Without JavaScript it is always shown.
const form = document.getElementById("incident-update-form");
const restore = form && form.querySelector("input[name=restore_components]");
if (restore) {
  const status = form.querySelector("select[name=status]");
  const field = restore.closest(".field");
  const sync = () => {
    field.hidden = status.value !== "resolved";
  };
  status.addEventListener("change", sync);
  sync();
}
