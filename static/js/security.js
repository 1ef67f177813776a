// Live security alerts: new and updated alerts appear at the top of the table as they are raised.
(function () {
  "use strict";
  var body = document.getElementById("live-alerts");
  var status = document.getElementById("live-status");
  if (!body) { return; }
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

  var delay = 1000;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/ws/security/alerts/");
    ws.onopen = function () { delay = 1000; status.textContent = "live"; };
    ws.onmessage = function (e) {
      var msg = JSON.parse(e.data);
      if (msg.type === "alert") { upsert(msg.alert); }
    };
    ws.onclose = function () {
      status.textContent = "live: reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
