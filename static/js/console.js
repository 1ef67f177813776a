// Reelflow operations console: small page helpers (everything works without them).
// - forms with data-confirm ask first (a bulk form only for the action in data-confirm-action);
// - a checkbox with data-select-all="<name>" selects every checkbox of that name in its form.
(() => {
  "use strict";

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    const only = form.dataset.confirmAction;
    if (only && form.elements.action && form.elements.action.value !== only) return;
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  function updateCount(form) {
    const out = document.getElementById("selected-count");
    if (!out || !form) return;
    const n = form.querySelectorAll('input[name="job"]:checked').length;
    out.textContent = n ? `${n} selected` : "";
  }

  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    const form = box.form;
    if (box.dataset.selectAll && form) {
      form.querySelectorAll(`input[type="checkbox"][name="${box.dataset.selectAll}"]`).forEach((b) => {
        b.checked = box.checked;
      });
    }
    updateCount(form);
  });
})();
