// Live updates by polling server-rendered fragments; spec files read into the textarea.
"use strict";
function poll(el) {
  const url = el.dataset.live;
  const tick = async () => {
    try {
      const resp = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (resp.status === 401) { window.location = "/ui/login"; return; }
      if (resp.ok) { el.innerHTML = await resp.text(); }
    } catch (e) { /* the next tick retries */ }
    setTimeout(tick, 1500);
  };
  setTimeout(tick, 1500);
}
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(poll);
  document.querySelectorAll("input.spec-file").forEach((input) => {
    input.addEventListener("change", async () => {
      const file = input.files[0];
      const area = input.closest("form").querySelector("textarea[name=app]");
      if (file && area) { area.value = await file.text(); }
    });
  });
  const filter = document.getElementById("state-filter");
  if (filter) { filter.addEventListener("change", () => filter.form.submit()); }
});
