// Live pages: the part of a page marked data-live is fetched again and replaced whenever
// the daemon announces an event (/api/events/stream, server-sent events). Without
// JavaScript, or without EventSource, the page is the same, only static.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !document.querySelector("[data-live]")) {
    return;
  }
  var kinds = ["REJECTED", "ACCEPTED", "PACKAGING", "BUILDING", "BUILT", "INSTALLED",
               "FAILED", "MIGRATED", "REMOVED"];
  var busy = false;
  var again = false;
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var next = old.id && fresh.getElementById(old.id);
          if (next) {
            old.replaceWith(document.importNode(next, true));
          }
        });
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }
  var source = new EventSource("/api/events/stream");
  // For whoever watches the page (the browser test waits for it).
  source.onopen = function () {
    document.documentElement.setAttribute("data-live-stream", "open");
  };
  kinds.forEach(function (kind) {
    source.addEventListener(kind, refresh);
  });
})();
