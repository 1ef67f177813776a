// Live security alerts: new and updated alerts appear at the top of the table as they are raised
// (over the shared websocket client, live.js).
(function () {
  "use strict";
  var body = document.getElementById("live-alerts");
  var status = document.getElementById("live-status");
  if (!body || !window.ReelflowLive) { return; }
  var alertUrl = body.getAttribute("data-alert-url");

  function cell(text) { var td = document.createElement("td"); td.textContent = text; return td; }

  function row(a) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-alert-id", a.id);
    var sev = document.createElement("td");
    var pill = document.createElement("span");
    pill.className = "pill sev-" + a.severity;
    pill.textContent = a.severity;
    sev.appendChild(pill);
    var title = document.createElement("td");
    var link = document.createElement("a");
    link.href = alertUrl.replace("/0/", "/" + a.id + "/");
    link.textContent = a.title;
    title.appendChild(link);
    tr.append(sev, title, cell(a.state), cell(String(a.actions)), cell(a.occurrences + "×"), cell("just now"));
    return tr;
  }

  function upsert(a) {
    var empty = body.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    var old = body.querySelector('tr[data-alert-id="' + a.id + '"]');
    if (old) { old.remove(); }
    var tr = row(a);
    tr.classList.add("fresh");
    body.insertBefore(tr, body.firstChild);
  }

  // The snapshot (the newest open alerts) is rendered by the server on the first load; after a
  // reconnect it brings what was raised or repeated while the socket was down.
  function catchUp(alerts) {
    alerts.slice().reverse().forEach(function (a) {
      var tr = body.querySelector('tr[data-alert-id="' + a.id + '"]');
      if (!tr || tr.cells[4].textContent !== a.occurrences + "×") { upsert(a); }
    });
  }

  ReelflowLive.connect("/ws/security/alerts/", {
    onSnapshot: function (msg) { catchUp(msg.alerts || []); },
    onMessage: function (msg) { if (msg.type === "alert") { upsert(msg.alert); } },
    onState: function (state) {
      if (state === "live") { status.textContent = "live"; }
      else if (state === "retrying") { status.textContent = "live: reconnecting…"; }
      else if (state === "closed") { status.textContent = "live: not allowed"; }
    },
  });
})();
