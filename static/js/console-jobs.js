// Reelflow console, jobs page: live rows and counts over one websocket (/ws/ops/jobs/), through
// the shared client (live.js).
//
// The server pushes every job's state changes (group "jobs"), each with that job's sequence
// number. The page keeps, per visible row, the number the row is current to: older messages
// are dropped. A changed or unknown job is re-fetched through the socket (debounced), rendered
// by the server with the same row template as the page, under the page's filters; the counts
// per state come back with it. New matching jobs appear at the top of the first page of the
// newest-first list, and are announced elsewhere.
(() => {
  "use strict";

  const table = document.getElementById("jobs-table");
  if (!table || !window.ReelflowLive) return;
  const tbody = table.tBodies[0];
  const status = document.getElementById("live-status");
  const notice = document.getElementById("new-jobs");
  const insertNew = table.dataset.firstPage === "1" && table.dataset.sort === "newest";
  const LABELS = {
    queued: "Queued", probing: "Probing", encoding: "Encoding", packaging: "Packaging", published: "Published",
    held_for_review: "Held for review", failed: "Failed", cancelled: "Cancelled",
  };
  const DEBOUNCE_MS = 700;

  let live = null;
  let timer = null;
  const pending = new Set();
  const announced = new Set();

  const rowOf = (id) => tbody.querySelector(`tr[data-job="${id}"]`);
  const visibleIds = () => Array.from(tbody.querySelectorAll("tr[data-job]"), (tr) => Number(tr.dataset.job));

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = `conn ${cls || ""}`;
  }

  function showConnection(what, info) {
    if (what === "connecting") setStatus("Connecting…", "wait");
    else if (what === "reconnecting") setStatus("Reconnecting…", "wait");
    else if (what === "live") setStatus("Live", "live");
    else if (what === "retrying") setStatus(`Disconnected; retrying in ${Math.round(info.delay / 1000)} s`, "wait");
    else if (info.code === 4403) setStatus("Live updates are for operations staff only", "bad");
    else setStatus("Live updates stopped; reload the page", "bad");
  }

  function onMessage(message) {
    if (message.type === "ready") {
      // What changed between the page's render (or the last connection) and now: refresh every visible row.
      visibleIds().forEach((id) => pending.add(id));
      flush();
    } else if (message.type === "message") {
      receive(message);
    } else if (message.type === "rows") {
      applyRows(message);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(flush, DEBOUNCE_MS);
  }

  function flush() {
    if (!live || !pending.size) return;
    const ids = Array.from(pending).slice(0, 200);
    if (!live.send({ action: "refresh", ids, query: location.search.replace(/^\?/, "") })) return;
    ids.forEach((id) => pending.delete(id));
    if (pending.size) schedule();
  }

  function receive(message) {
    const tr = rowOf(message.job);
    if (tr) {
      if (message.seq <= Number(tr.dataset.seq || 0)) return;
      tr.dataset.seq = String(message.seq);
      tr.dataset.state = message.state;
      const pill = tr.querySelector('[data-role="state"]');
      if (pill) {
        pill.textContent = LABELS[message.state] || message.state;
        pill.className = `pill job-${message.state}`;
      }
    }
    pending.add(message.job);
    schedule();
  }

  function applyRows(reply) {
    const returned = new Set();
    const fresh = [];
    reply.rows.forEach((row) => {
      returned.add(row.id);
      const tr = rowOf(row.id);
      if (tr) {
        if (row.seq < Number(tr.dataset.seq || 0)) return;  // a message already moved it further
        const checked = tr.querySelector('input[name="job"]')?.checked;
        const template = document.createElement("template");
        template.innerHTML = row.html.trim();
        const replacement = template.content.firstElementChild;
        const box = replacement.querySelector('input[name="job"]');
        if (box) box.checked = Boolean(checked);
        tr.replaceWith(replacement);
      } else {
        fresh.push(row);
      }
    });
    // Asked for but not returned: the job no longer matches the filters.
    reply.asked.forEach((id) => {
      const tr = rowOf(id);
      if (tr && !returned.has(id)) { tr.classList.add("gone"); tr.title = "No longer matches the filters"; }
    });
    if (fresh.length) {
      if (insertNew) {
        tbody.querySelector("tr.empty")?.remove();
        fresh.slice().reverse().forEach((row) => {
          const template = document.createElement("template");
          template.innerHTML = row.html.trim();
          const tr = template.content.firstElementChild;
          tr.classList.add("new");
          tbody.prepend(tr);
        });
      } else {
        fresh.forEach((row) => announced.add(row.id));
      }
      const n = insertNew ? fresh.length : announced.size;
      notice.hidden = false;
      notice.textContent = insertNew
        ? `${n} new job${n === 1 ? "" : "s"} added at the top.`
        : `${n} new job${n === 1 ? "" : "s"} match these filters. Go to the first page, newest first, to see them.`;
    }
    Object.entries(reply.counts || {}).forEach(([state, n]) => {
      const el = document.querySelector(`[data-count="${state}"]`);
      if (el) el.textContent = String(n);
    });
  }

  live = ReelflowLive.connect(table.dataset.socket, { onMessage, onState: showConnection });
})();
