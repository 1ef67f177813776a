// Reelflow live: the one websocket client of every page that follows live state. Plain browser
// JS, loaded before the page's own script; it defines window.ReelflowLive.
//
//   const live = ReelflowLive.connect("/ws/…/", {
//     sequenced: true,          // the stream's messages carry its `seq` (the job sockets)
//     onSnapshot(msg) {},       // {"type": "snapshot", …}: the whole state; its `seq` is the new floor
//     onMessage(msg) {},        // any other message; when sequenced, only numbers not applied yet
//     onState(state, info) {},  // "connecting" | "reconnecting" | "live" | "retrying" | "closed"
//     shouldReconnect(event) {},  // asked when the socket drops: false ends it ("closed")
//   });
//   live.send(obj) -> sent?   live.askSnapshot()   live.close()   (the page is done: "closed")
//
// ws: or wss: follows the page's scheme. "live" means the server's first message (its snapshot,
// or its hello) arrived, i.e. it has subscribed us; the backoff resets then. Sequenced: a number
// at or below the floor, or seen already, is dropped; a gap still open after gapWaitMs (numbers
// can be late: workers publish concurrently) sends {"action": "snapshot"}, again every gapWaitMs
// while it stays open. A reconnect gets a fresh snapshot from the server. Close codes 4403 (not
// allowed) and 4404 (not found) are final. Reconnects wait minDelayMs doubling up to maxDelayMs,
// each with jitter (50–100 % of it); info = {attempt, delay (ms), code}. The socket is closed on
// pagehide, and opened again if the page comes back from the back-forward cache.
(function () {
  "use strict";
  var FINAL_CODES = [4403, 4404];
  function noop() {}

  function connect(path, options) {
    var o = options || {};
    var onState = o.onState || noop, onSnapshot = o.onSnapshot || noop, onMessage = o.onMessage || noop;
    var gapWait = o.gapWaitMs || 3000, minDelay = o.minDelayMs || 1000, maxDelay = o.maxDelayMs || 15000;
    var ws = null, attempt = 0, stopped = false, hidden = false, retryTimer = null, gapTimer = null;
    var floor = 0, seen = new Set();

    function open() {
      var scheme = location.protocol === "https:" ? "wss:" : "ws:";
      var socket = new WebSocket(scheme + "//" + location.host + path);
      var greeted = false;
      ws = socket;
      onState(attempt ? "reconnecting" : "connecting", { attempt: attempt });
      socket.onmessage = function (event) {
        if (socket !== ws) return;
        var message = JSON.parse(event.data);
        if (!greeted) { greeted = true; attempt = 0; onState("live", { attempt: 0 }); }
        if (message.type === "snapshot") {
          if (o.sequenced) setFloor(message.seq || 0);
          onSnapshot(message);
        } else if (!o.sequenced || typeof message.seq !== "number" || accept(message.seq)) {
          onMessage(message);
        }
      };
      socket.onclose = function (event) {
        if (socket !== ws) return;  // one the page or pagehide closed: already dealt with
        ws = null;
        clearGap();
        if (FINAL_CODES.indexOf(event.code) >= 0 || (o.shouldReconnect && !o.shouldReconnect(event))) {
          stopped = true;
          onState("closed", { attempt: attempt, code: event.code });
          return;
        }
        attempt += 1;
        var delay = Math.min(maxDelay, minDelay * Math.pow(2, attempt - 1));
        delay = Math.round(delay * (0.5 + Math.random() / 2));
        onState("retrying", { attempt: attempt, delay: delay, code: event.code });
        retryTimer = setTimeout(function () { retryTimer = null; open(); }, delay);
      };
    }

    function halt() {
      stopped = true;
      clearTimeout(retryTimer);
      retryTimer = null;
      clearGap();
      var socket = ws;
      ws = null;
      if (socket) socket.close(1000);
    }

    // --- Sequence numbers ------------------------------------------------------------------
    function clearGap() { clearTimeout(gapTimer); gapTimer = null; }

    function advance() {
      while (seen.has(floor + 1)) { floor += 1; seen.delete(floor); }
      if (!seen.size) clearGap();
      else if (!gapTimer) gapTimer = setTimeout(onGap, gapWait);  // a gap opened: wait, then ask
    }

    function setFloor(seq) {
      floor = seq;
      seen.forEach(function (n) { if (n <= floor) seen.delete(n); });
      clearGap();
      advance();
    }

    function accept(seq) {
      if (seq <= floor || seen.has(seq)) return false;
      seen.add(seq);
      advance();
      return true;
    }

    function onGap() {
      gapTimer = null;
      if (!seen.size) return;
      askSnapshot();
      gapTimer = setTimeout(onGap, gapWait);  // the server may have refused (rate limit): again
    }

    // --- The page's handle -----------------------------------------------------------------
    function send(obj) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(JSON.stringify(obj));
      return true;
    }
    function askSnapshot() { return send({ action: "snapshot" }); }

    window.addEventListener("pagehide", function () {
      if (stopped) return;
      hidden = true;
      halt();
    });
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted || !hidden) return;
      hidden = false;
      stopped = false;
      attempt = 0;
      open();
    });

    open();
    return {
      send: send,
      askSnapshot: askSnapshot,
      close: function () {
        if (stopped) return;
        halt();
        onState("closed", { attempt: attempt, code: 1000 });
      },
    };
  }

  window.ReelflowLive = { connect: connect };
})();
