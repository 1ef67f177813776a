// Reelflow console, job page: the unit grid and the units table follow the job live.
//
// Same protocol as the studio's grid, through the shared client (live.js): a snapshot first
// (every unit's state and the sequence number it is current to), then each change with the
// job's next sequence number; live.js drops numbers already applied and asks for a fresh
// snapshot when a gap stays open. The grid is rendered by the server; this script only
// recolours its cells. When the job's units or state change in ways the page cannot show (a
// newly planned grid, new commands and logs, other actions available) it says so and offers a
// reload.
(() => {
  "use strict";

  const root = document.getElementById("job");
  if (!root || !window.ReelflowLive) return;
  const status = document.getElementById("live-status");
  const changed = document.getElementById("changed");
  const FINAL = new Set(["published", "failed", "cancelled"]);
  const LABELS = {
    queued: "Queued", probing: "Probing", encoding: "Encoding", packaging: "Packaging", published: "Published",
    held_for_review: "Held for review", failed: "Failed", cancelled: "Cancelled",
  };

  let live = null;
  let state = root.dataset.state;

  const cell = (id) => document.querySelector(`#grid td[data-unit="${id}"]`);
  const unitRow = (id) => document.querySelector(`tr[data-unit-row="${id}"]`);

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = `conn ${cls || ""}`;
  }

  function markChanged() { changed.hidden = false; }

  function showConnection(what, info) {
    if (what === "connecting") setStatus("Connecting…", "wait");
    else if (what === "reconnecting") setStatus("Reconnecting…", "wait");
    else if (what === "live") setStatus("Live", "live");
    else if (what === "retrying") setStatus(`Disconnected; retrying in ${Math.round(info.delay / 1000)} s`, "wait");
    else if (info.code === 4403) setStatus("Live updates are for operations staff only", "bad");
    else if (info.code === 4404) setStatus("This job no longer exists", "bad");
    else setStatus("Finished", "");
  }

  function finish() { if (FINAL.has(state) && live) live.close(); }

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
    finish();
  }

  function applySnapshot(snapshot) {
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
    finish();
  }

  function receive(message) {
    if (message.type !== "message") return;
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
  live = ReelflowLive.connect(root.dataset.socket, {
    sequenced: true,
    onSnapshot: applySnapshot,
    onMessage: receive,
    onState: showConnection,
    shouldReconnect: () => !FINAL.has(state),
  });
})();
