// Reelflow studio: the asset page's live encoding grid. One websocket, no polling.
//
// The server sends a snapshot first (every unit's state, and the sequence number it is
// current to), then every change the pipeline publishes, each with the job's next sequence
// number. The shared client (live.js) drops messages at or below the snapshot's number, or
// seen already; a gap that stays open asks for a fresh snapshot; a reconnect gets a fresh
// snapshot. So nothing is missed and nothing is applied twice.
(() => {
  "use strict";

  const root = document.getElementById("progress");
  if (!root || !window.ReelflowLive) return;

  const FINAL = new Set(["published", "failed", "cancelled", "rejected"]);
  const UNIT_FINAL = new Set(["done", "failed", "cancelled"]);
  const FAILURE_TITLES = { failed: "Encoding failed", held_for_review: "Held for review", rejected: "Rejected" };
  const JOB_LABELS = {
    queued: "Queued", probing: "Probing", encoding: "Encoding", packaging: "Packaging", published: "Published",
    checking: "Checking rules", publishing: "Publishing", held_for_review: "Held for review", rejected: "Rejected",
    failed: "Failed", cancelled: "Cancelled",
  };
  const UNIT_LABELS = { queued: "queued", running: "encoding", done: "done", failed: "failed", cancelled: "cancelled" };
  const FRESH_MS = 5000;  // a unit's fps counts towards speeds this long after its last report

  const $ = (id) => document.getElementById(id);
  const grid = $("grid");
  const socketState = $("socket-state");

  let stream = null;          // the shared live client (live.js)
  let paintQueued = false;
  const rateSamples = [];      // [time, overall fraction] for the job's time left

  let job = null;
  let chunks = [];             // index -> {frame_count}
  const renditions = new Map();  // id -> {id, name, kind, width, height, state, row}
  const units = new Map();       // id -> {id, rendition, chunk, state, percent, fps, eta, at, cell}

  // --- Formatting ----------------------------------------------------------------------------

  function clock(seconds) {
    if (seconds === null || !isFinite(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }

  // The server renders times in UTC as "27 Nov 17:05:09"; live entries match it.
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const two = (n) => String(n).padStart(2, "0");
  const stamp = (d) => `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;

  const fps = (value) => (value > 0 ? `${value.toFixed(value < 10 ? 1 : 0)} fps` : "–");

  // --- Socket --------------------------------------------------------------------------------

  function setConnection(text, cls) {
    socketState.textContent = text;
    socketState.className = `conn ${cls || ""}`;
  }

  function showConnection(what, info) {
    if (what === "connecting") setConnection("Connecting…", "wait");
    else if (what === "reconnecting") setConnection("Reconnecting…", "wait");
    else if (what === "live") setConnection("Live", "live");
    else if (what === "retrying") setConnection(`Disconnected; retrying in ${Math.round(info.delay / 1000)} s`, "wait");
    else if (info.code === 4403 || info.code === 4404) {
      setConnection(info.code === 4404 ? "Not found" : "Not allowed", "bad");
      $("grid-note").textContent = "This page may not follow this asset's encoding.";
    } else setConnection("Finished", "done");
  }

  // Over once the job is final and its quality measurements (which outlast publishing) ended.
  const over = () => Boolean(job && FINAL.has(job.state) && !qualityPending());
  function finish() { if (over() && stream) stream.close(); }
  const askSnapshot = () => stream && stream.askSnapshot();

  // --- Snapshot: rebuild everything ------------------------------------------------------------

  function applySnapshot(snapshot) {
    const previous = units;
    job = snapshot.job;
    chunks = [];
    snapshot.chunks.forEach((c) => { chunks[c.index] = c; });
    renditions.clear();
    const keep = new Map(previous);
    units.clear();
    snapshot.renditions.forEach((r) => renditions.set(r.id, { ...r }));
    snapshot.units.forEach((u) => {
      const old = keep.get(u.id);
      const unit = { ...u, percent: u.state === "done" ? 100 : 0, fps: 0, eta: null, at: 0 };
      if (old && u.state === "running" && old.state === "running") Object.assign(unit, pick(old, "percent", "fps", "eta", "at"));
      units.set(u.id, unit);
    });
    buildGrid();
    setJobState(job.state, job.reason, false);
    schedulePaint();
    // Measurements may have ended while the socket was down.
    if (qualityPending()) refreshQuality();
    // A finished job changes no more (its measurements aside): the snapshot was all there was.
    finish();
  }

  function pick(obj, ...keys) {
    return Object.fromEntries(keys.map((k) => [k, obj[k]]));
  }

  function buildGrid() {
    const thead = grid.tHead;
    const tbody = grid.tBodies[0];
    thead.replaceChildren();
    tbody.replaceChildren();
    if (!renditions.size) return;
    $("grid-note").textContent = "";
    const head = thead.insertRow();
    ["Rendition", "Speed", "Time left"].forEach((text) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = text;
      head.appendChild(th);
    });
    const chunkCount = chunks.filter(Boolean).length;
    chunks.forEach((c) => {
      if (!c) return;
      const th = document.createElement("th");
      th.scope = "col";
      th.className = "chunk-col";
      th.textContent = String(c.index + 1);
      th.title = `Chunk ${c.index + 1}: ${clock(c.start_s)}–${clock(c.end_s)}`;
      head.appendChild(th);
    });
    const byRendition = new Map();
    units.forEach((u) => {
      if (!byRendition.has(u.rendition)) byRendition.set(u.rendition, []);
      byRendition.get(u.rendition).push(u);
    });
    renditions.forEach((r) => {
      const row = tbody.insertRow();
      row.dataset.rendition = r.id;
      const th = document.createElement("th");
      th.scope = "row";
      const size = r.kind === "video" && r.width ? `${r.width}×${r.height}` : "audio, whole file";
      th.innerHTML = `<span class="r-name"></span><small class="r-detail"></small>`;
      th.querySelector(".r-name").textContent = r.name;
      th.querySelector(".r-detail").textContent = size;
      row.appendChild(th);
      r.fpsCell = row.insertCell();
      r.fpsCell.className = "r-fps";
      r.etaCell = row.insertCell();
      r.etaCell.className = "r-eta";
      r.row = row;
      const list = (byRendition.get(r.id) || []).sort((a, b) => (a.chunk ?? -1) - (b.chunk ?? -1));
      list.forEach((u) => {
        const cell = row.insertCell();
        cell.className = "cell";
        cell.dataset.unit = u.id;
        cell.dataset.chunk = u.chunk ?? "";
        if (u.chunk === null || u.chunk === undefined) cell.colSpan = Math.max(1, chunkCount);
        cell.innerHTML = '<span class="fill"></span><span class="pct"></span>';
        u.cell = cell;
        u.painted = null;
      });
    });
  }

  // --- Messages ---------------------------------------------------------------------------------

  function receive(message) {
    if (message.type !== "message") return;
    const now = performance.now();
    if (message.kind === "job") {
      setJobState(message.state, message.reason, true);
      // Planning creates the grid's rows and columns: fetch them.
      if (message.state === "encoding" && !renditions.size) askSnapshot();
    } else if (message.kind === "unit") {
      const unit = units.get(message.unit);
      if (!unit) { askSnapshot(); return; }
      unit.state = message.state;
      if (message.error) unit.error = message.error;
      if (message.state === "done") unit.percent = 100;
      if (message.state === "queued") Object.assign(unit, { percent: 0, fps: 0, eta: null });
      if (message.state === "running") unit.at = now;
    } else if (message.kind === "progress") {
      const unit = units.get(message.unit);
      if (!unit) { askSnapshot(); return; }
      // A late tick must not turn a finished cell back into a running one.
      if (UNIT_FINAL.has(unit.state)) return;
      unit.state = "running";
      if (message.percent !== null && message.percent !== undefined) unit.percent = Math.min(100, message.percent);
      unit.fps = message.fps || 0;
      unit.eta = message.eta_s;
      unit.at = now;
    } else if (message.kind === "rendition") {
      const r = renditions.get(message.rendition_id);
      if (r) r.state = message.state;
      // A rendition ready with a preview: show (or refresh) the player over what is ready.
      if (message.preview && message.state === "ready") loadPlayer({ preview: true });
    } else if (message.kind === "quality") {
      refreshQuality();
      return;
    }
    schedulePaint();
  }

  // --- Quality panel: measurements end one chunk at a time; the panel is fetched again --------

  let qualityTimer = null;

  function qualityPending() {
    const panel = $("quality");
    // "waiting": no rendition ready to measure yet; "pending": measurements running.
    return Boolean(panel && ["waiting", "pending"].includes(panel.dataset.state));
  }

  function refreshQuality() {
    const url = root.dataset.qualityUrl;
    if (!url || !$("quality")) return;
    clearTimeout(qualityTimer);  // a burst of measurements ending together: one fetch
    qualityTimer = setTimeout(async () => {
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        if (!response.ok) return;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("quality");
        const panel = $("quality");
        if (fresh && panel) panel.replaceWith(document.importNode(fresh, true));
      } catch (err) {
        return;  // the next message (or a reload) brings it
      }
      finish();
    }, 300);
  }

  function setJobState(state, reason, live) {
    const changed = !job || job.state !== state || live === false;
    if (!job) job = { state };
    job.state = state;
    job.reason = reason || "";
    root.dataset.state = state;
    for (const el of [$("job-state"), $("asset-state")]) {
      if (!el) continue;
      el.textContent = JOB_LABELS[state] || state;
      el.className = `pill job-${state}`;
    }
    if (state === "failed" || reason) {
      $("failure").hidden = !reason;
      $("failure-reason").textContent = reason || "";
      const title = $("failure-title");
      if (title) title.textContent = FAILURE_TITLES[state] || FAILURE_TITLES.failed;
    } else if (!FINAL.has(state) && state !== "held_for_review") {
      $("failure").hidden = true;
    }
    if (state === "checking") $("grid-note").textContent = "Every rendition is packaged; checking the publish rules…";
    if (state === "publishing") $("grid-note").textContent = "The rules passed; publishing the package…";
    if (state === "probing" || state === "queued") $("grid-note").textContent = "Probing the source; the grid appears once its chunks are planned.";
    if (state === "packaging") $("grid-note").textContent = "Every chunk is encoded; packaging HLS and DASH…";
    if (state === "published") $("grid-note").textContent = "";
    if (live && changed) timeline(JOB_LABELS[state] || state, reason);
    if (state === "published" && live) loadPlayer();
    // Packaged: the preview grows to every rung while the rules decide.
    else if (state === "checking" && live) loadPlayer({ preview: true });
    // The socket stays open while quality measurements still run (they outlast publishing).
    if (live) finish();
  }

  function timeline(what, detail) {
    const list = $("timeline");
    if (!list) return;
    const li = document.createElement("li");
    li.className = "live";
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = stamp(now);
    const label = document.createElement("span");
    label.className = "what";
    label.textContent = what;
    li.append(time, " ", label);
    if (detail) {
      const d = document.createElement("span");
      d.className = "detail";
      d.textContent = detail;
      li.append(" ", d);
    }
    list.querySelectorAll("li.hint").forEach((el) => el.remove());
    list.appendChild(li);
  }

  async function loadPlayer({ preview = false } = {}) {
    const slot = $("player-slot");
    const shown = slot && slot.querySelector("#player");
    // The published player replaces a preview; a preview never replaces the published player,
    // nor one that is playing (its viewer gets the new rungs on the next load).
    if (!slot || (shown && !shown.dataset.preview)) return;
    if (shown && preview) {
      const video = shown.querySelector("video");
      if (video && !video.paused) return;
    }
    try {
      const response = await fetch(slot.dataset.playerUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      slot.innerHTML = await response.text();
      const section = slot.querySelector("#player");
      if (section && window.ReelflowPlayer) window.ReelflowPlayer.init(section);
    } catch (err) {
      if (!preview) slot.innerHTML = '<p class="card">Published. <a href="">Reload the page</a> to watch it.</p>';
    }
  }

  // --- Painting ---------------------------------------------------------------------------------

  function schedulePaint() {
    if (paintQueued) return;
    paintQueued = true;
    requestAnimationFrame(() => { paintQueued = false; paint(); });
  }

  function frames(unit) {
    const c = unit.chunk === null || unit.chunk === undefined ? null : chunks[unit.chunk];
    return c ? c.frame_count : 0;
  }

  function paint() {
    const now = performance.now();
    let weightAll = 0;
    let weightDone = 0;
    let jobFps = 0;
    let done = 0;
    const perRendition = new Map();
    units.forEach((u) => {
      const pct = u.state === "done" ? 100 : u.state === "running" ? u.percent || 0 : 0;
      if (u.state === "done") done += 1;
      const fresh = u.state === "running" && now - u.at < FRESH_MS;
      const r = renditions.get(u.rendition);
      const stats = perRendition.get(u.rendition) || { fps: 0, remaining: 0, running: 0, eta: 0, open: 0 };
      if (fresh) { stats.fps += u.fps; jobFps += r && r.kind === "video" ? u.fps : 0; stats.running += 1; }
      if (!UNIT_FINAL.has(u.state)) {
        stats.open += 1;
        stats.remaining += frames(u) * (1 - pct / 100);
        if (fresh && u.eta !== null && u.eta !== undefined) stats.eta = Math.max(stats.eta, u.eta);
      }
      perRendition.set(u.rendition, stats);
      // Pixels × frames: a 1080p chunk is more work than a 240p one. Audio counts little.
      const weight = r && r.kind === "video" ? frames(u) * (r.width || 1) * (r.height || 1) : 0;
      weightAll += weight;
      weightDone += (weight * pct) / 100;
      paintCell(u, pct);
    });
    renditions.forEach((r) => {
      const stats = perRendition.get(r.id) || { fps: 0, remaining: 0, running: 0, open: 0, eta: 0 };
      if (!r.fpsCell) return;
      r.fpsCell.textContent = stats.running ? fps(stats.fps) : "–";
      let left = "–";
      if (!stats.open) left = r.state === "ready" ? "ready" : r.state === "assembling" ? "joining" : "done";
      else if (stats.running && r.kind === "video" && stats.fps > 0) left = clock(stats.remaining / stats.fps);
      else if (stats.running && r.kind !== "video") left = clock(stats.eta);
      else left = "waiting";
      r.etaCell.textContent = left;
      r.row.dataset.state = r.state;
    });
    const fraction = job && job.state === "published" ? 1 : weightAll ? weightDone / weightAll : 0;
    $("job-progress").value = Math.round(fraction * 1000) / 10;
    $("job-percent").textContent = `${Math.floor(fraction * 100)} %`;
    $("job-fps").textContent = fps(jobFps);
    $("job-units").textContent = units.size ? `${done} of ${units.size} done` : "–";
    $("job-eta").textContent = jobTimeLeft(fraction, now);
  }

  function jobTimeLeft(fraction, now) {
    if (!job || FINAL.has(job.state)) return job && job.state === "published" ? "done" : "–";
    if (job.state === "packaging") return "packaging";
    rateSamples.push([now, fraction]);
    while (rateSamples.length > 2 && now - rateSamples[0][0] > 30000) rateSamples.shift();
    const [t0, f0] = rateSamples[0];
    const rate = (fraction - f0) / (now - t0);  // per ms, over the last half minute
    if (!(rate > 0) || now - t0 < 1500) return "estimating…";
    return clock((1 - fraction) / rate / 1000);
  }

  function paintCell(unit, pct) {
    const cell = unit.cell;
    if (!cell) return;
    const shown = Math.round(pct);
    const key = `${unit.state}:${shown}`;
    if (unit.painted === key) return;
    const stateChanged = !unit.painted || unit.painted.split(":")[0] !== unit.state;
    unit.painted = key;
    cell.className = `cell unit-${unit.state}`;
    cell.dataset.state = unit.state;
    cell.firstChild.style.width = `${shown}%`;
    cell.lastChild.textContent = unit.state === "running" ? `${shown}%` : "";
    const where = unit.chunk === null || unit.chunk === undefined ? "whole file" : `chunk ${unit.chunk + 1}`;
    const r = renditions.get(unit.rendition);
    cell.title = `${r ? r.name : ""} ${where}: ${UNIT_LABELS[unit.state] || unit.state}` +
      (unit.state === "running" ? ` ${shown}%` : "") + (unit.error ? ` (${unit.error})` : "");
    if (stateChanged) cell.setAttribute("aria-label", cell.title);
  }

  // Keep speeds and times honest when no message arrives (a stalled unit's fps goes stale).
  setInterval(schedulePaint, 1000);
  stream = ReelflowLive.connect(root.dataset.socket, {
    sequenced: true,
    onSnapshot: applySnapshot,
    onMessage: receive,
    onState: showConnection,
    shouldReconnect: () => !over(),
  });
})();
