// Live progress for a backup run or restore page: one websocket (the shared client, live.js), no polling.
// The server pushes a snapshot after each recorded batch (at a bounded rate); this fills the
// [data-field] elements of the section marked [data-live-url] and reloads once it is over.
(function () {
  "use strict";
  var section = document.querySelector("[data-live-url]");
  if (!section || !("WebSocket" in window) || !window.ReelflowLive) return;
  var status = section.querySelector("[data-live-status]");
  var bar = section.querySelector("[data-bar]");
  var meter = section.querySelector("[role=progressbar]");
  var units = ["B", "KB", "MB", "GB", "TB"];

  function bytes(n) {
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }
  function say(text) { if (status) status.textContent = text; }
  function apply(data) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var name = el.getAttribute("data-field");
      if (!(name in data)) return;
      var value = data[name], format = el.getAttribute("data-format");
      if (format === "bytes") value = bytes(value);
      else if (format === "bytes-per-second") value = bytes(value) + "/s";
      el.textContent = value;
      var pill = el.getAttribute("data-pill");
      if (pill) el.className = "pill " + pill + "-" + data.state;
    });
    if (bar) bar.style.width = data.percent + "%";
    if (meter) meter.setAttribute("aria-valuenow", data.percent);
  }

  var finished = false;
  var live = ReelflowLive.connect(section.getAttribute("data-live-url"), {
    onSnapshot: function (data) {
      apply(data);
      if (!data.active && !finished) {
        finished = true;
        live.close();
        say("Finished. Loading the final report…");
        setTimeout(function () { location.reload(); }, 800);
      }
    },
    onState: function (state, info) {
      if (state === "live") say("Live: figures update as the work proceeds.");
      else if (state === "retrying") {
        say("Connection lost; retrying in " + Math.round(info.delay / 1000) + " s. Reload the page for the latest figures.");
      } else if (state === "closed" && info.code === 4403) say("Not allowed: sign in as operations staff.");
      else if (state === "closed" && info.code === 4404) say("This no longer exists.");
    },
  });
})();
