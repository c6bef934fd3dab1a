// optibridge dashboard: the only script. Elements with data-poll="URL" get their content replaced
// from URL every data-every milliseconds (data-poll-now: also at once). Forms with data-confirm ask
// first. No build step, no dependencies.
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-every") || "3000", 10);
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) {
          if (r.status === 401) { window.location.href = "/ui/login"; return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (typeof html === "string") { el.innerHTML = html; } })
        .catch(function () { /* keep the last content; try again at the next tick */ })
        .then(function () { if (every > 0) { window.setTimeout(tick, every); } });
    }
    if (el.hasAttribute("data-poll-now")) { tick(); } else { window.setTimeout(tick, every); }
  }
  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), poll);
    // Delegated: forms inside a refreshed fragment (the campaign's actions) are new elements.
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form && form.hasAttribute && form.hasAttribute("data-confirm") &&
          !window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
