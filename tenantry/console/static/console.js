// A page that follows a running operation reloads itself when the operation ends (the poll's
// answer carries HX-Refresh). Once the browser has started leaving the page (a link clicked, an
// address typed), a late poll answer must not reload it: the reload would cancel the navigation
// the person asked for. beforeunload fires when a navigation starts, before its request is sent.
(function () {
  "use strict";
  let leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });
  // A page restored from the back/forward cache is being looked at again: follow it again.
  window.addEventListener("pageshow", function () { leaving = false; });
  for (const name of ["htmx:beforeRequest", "htmx:beforeOnLoad"]) {
    document.addEventListener(name, function (event) {
      if (leaving) {
        event.preventDefault();
      }
    });
  }
})();
