// Reelflow console, job page: the unit grid and the units table follow the job live.
//
// Same protocol as the studio's grid: a snapshot first (every unit's state and the sequence
// number it is current to), then each change with the job's next sequence number; numbers at
// or below what is applied are dropped, a gap that stays open asks for a fresh snapshot.
// The grid is rendered by the server; this script only recolours its cells. When the job's
// units or state change in ways the page cannot show (a newly planned grid, new commands and
// logs, other actions available) it says so and offers a reload.
(() => {
  "use strict";

  const root = document.getElementById("job");
  if (!root) return;
  const status = document.getElementById("live-status");
  const changed = document.getElementById("changed");
  const FINAL = new Set(["published", "failed", "cancelled"]);
  const LABELS = {
    queued: "Queued", probing: "Probing", encoding: "Encoding", packaging: "Packaging", published: "Published",
    held_for_review: "Held for review", failed: "Failed", cancelled: "Cancelled",
  };
  const GAP_WAIT_MS = 3000;

  let ws = null;
  let retries = 0;
  let floor = 0;
  const seen = new Set();
  let gapTimer = null;
  let state = root.dataset.state;

  const cell = (id) => document.querySelector(`#grid td[data-unit="${id}"]`);
  const unitRow = (id) => document.querySelector(`tr[data-unit-row="${id}"]`);

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = `conn ${cls || ""}`;
  }

  function markChanged() { changed.hidden = false; }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}${root.dataset.socket}`);
    setStatus(retries ? "Reconnecting…" : "Connecting…", "wait");
    ws.onopen = () => { retries = 0; setStatus("Live", "live"); };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "snapshot") applySnapshot(message);
      else if (message.type === "message") receive(message);
    };
    ws.onclose = (event) => {
      ws = null;
      if (event.code === 4403) { setStatus("Live updates are for operations staff only", "bad"); return; }
      if (event.code === 4404) { setStatus("This job no longer exists", "bad"); return; }
      if (FINAL.has(state)) { setStatus("Finished", ""); return; }
      retries += 1;
      const delay = Math.min(15000, 500 * 2 ** Math.min(retries, 5));
      setStatus(`Disconnected; retrying in ${Math.round(delay / 1000)} s`, "wait");
      setTimeout(connect, delay);
    };
  }

  function askSnapshot() {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: "snapshot" }));
  }

  function accept(seq) {
    if (seq <= floor || seen.has(seq)) return false;
    seen.add(seq);
    while (seen.has(floor + 1)) { floor += 1; seen.delete(floor); }
    clearTimeout(gapTimer);
    if (seen.size) gapTimer = setTimeout(() => { if (seen.size) askSnapshot(); }, GAP_WAIT_MS);
    return true;
  }

  function setUnit(id, unitState, extra) {
    const td = cell(id);
    if (!td) { if (unitState) markChanged(); return; }
    if (unitState) {
      td.className = `cell unit-${unitState}`;
      const label = td.title.replace(/: [a-z]+( \d+%)?$/, `: ${unitState}`);
      td.title = label;
      td.querySelector("a")?.setAttribute("aria-label", label);
      td.querySelector(".fill").style.width = unitState === "done" ? "100%" : "0";
      td.querySelector(".pct").textContent = "";
      const row = unitRow(id);
      const pill = row?.querySelector('[data-role="ustate"]');
      if (pill) { pill.textContent = unitState; pill.className = `pill unit-${unitState}`; }
      if (extra && extra.attempt !== undefined) {
        const attempts = row?.querySelector('[data-role="attempts"]');
        if (attempts) attempts.textContent = String(extra.attempt);
      }
    }
  }

  function setJobState(next, reason) {
    if (next === state) return;
    state = next;
    const pill = document.getElementById("job-state");
    pill.textContent = LABELS[next] || next;
    pill.className = `pill job-${next}`;
    markChanged();
    if (FINAL.has(next) && ws) ws.close(1000);
  }

  function applySnapshot(snapshot) {
    floor = snapshot.seq;
    seen.clear();
    clearTimeout(gapTimer);
    snapshot.units.forEach((u) => {
      const td = cell(u.id);
      if (!td) { markChanged(); return; }
      if (!td.classList.contains(`unit-${u.state}`)) setUnit(u.id, u.state, { attempt: u.attempts });
    });
    snapshot.renditions.forEach((r) => {
      const tr = document.querySelector(`#grid tr[data-rendition="${r.id}"]`);
      const label = tr?.querySelector('[data-role="rstate"]');
      if (label) label.textContent = r.state;
    });
    setJobState(snapshot.job.state, snapshot.job.reason);
    if (FINAL.has(snapshot.job.state) && ws) ws.close(1000);
  }

  function receive(message) {
    if (!accept(message.seq)) return;
    if (message.kind === "job") {
      setJobState(message.state, message.reason);
    } else if (message.kind === "unit") {
      setUnit(message.unit, message.state, { attempt: message.attempt });
      if (message.state === "done" || message.state === "failed") markChanged();
    } else if (message.kind === "progress") {
      const td = cell(message.unit);
      if (!td || td.classList.contains("unit-done") || td.classList.contains("unit-failed")) return;
      if (!td.classList.contains("unit-running")) setUnit(message.unit, "running");
      if (message.percent !== null && message.percent !== undefined) {
        const pct = Math.min(100, Math.round(message.percent));
        td.querySelector(".fill").style.width = `${pct}%`;
        td.querySelector(".pct").textContent = `${pct}%`;
      }
    } else if (message.kind === "rendition") {
      const tr = document.querySelector(`#grid tr[data-rendition="${message.rendition_id}"]`);
      const label = tr?.querySelector('[data-role="rstate"]');
      if (label) label.textContent = message.state;
    } else if (message.kind === "quality") {
      markChanged();  // new quality numbers: the banner offers the reload
    }
  }

  if (FINAL.has(state)) { setStatus("Finished", ""); return; }
  connect();
})();
