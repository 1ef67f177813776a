// Reelflow studio: uploads straight from the browser to S3 (multipart, parts in parallel,
// resumable). Django only starts the upload, signs part URLs and completes it; the bytes go
// to S3 with PUTs on short-lived presigned URLs. Choosing a file that has an unfinished upload
// (same name, size, lastModified and fingerprint of its first MiB) continues it: the server
// answers with the parts S3 already holds.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("upload-config").textContent);
  const queue = document.getElementById("queue");
  const queueEmpty = document.getElementById("queue-empty");
  const startAll = document.getElementById("start-all");
  const fileInput = document.getElementById("files");
  const dropzone = document.getElementById("dropzone");
  const profileSelect = document.getElementById("profile");
  const template = document.getElementById("upload-item");

  const FINGERPRINT_BYTES = 1024 * 1024;
  const SIGN_BATCH = 20;
  const MAX_FILES_AT_ONCE = 2;
  const MAX_PART_ATTEMPTS = 8;

  // --- Small helpers --------------------------------------------------------------------------

  function human(bytes) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function clock(seconds) {
    if (!isFinite(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${sec} s`;
    return `${sec} s`;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const online = () => new Promise((resolve) => {
    if (navigator.onLine) { resolve(); return; }
    window.addEventListener("online", () => resolve(), { once: true });
  });

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  class ApiError extends Error {
    constructor(message, status, code, data) {
      super(message);
      this.status = status;
      this.code = code;
      this.data = data || {};
    }
  }

  async function api(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(body || {}),
      });
    } catch (err) {
      throw new ApiError("Reelflow cannot be reached (network).", 0, "network");
    }
    if (response.redirected) {
      throw new ApiError("You are signed out. Log in again, then choose the file again to continue.", 401, "signed_out");
    }
    let data = {};
    try { data = await response.json(); } catch (err) { data = {}; }
    if (!response.ok) {
      const message = data.message || (response.status === 403
        ? "The server refused the request (your session may have ended: reload the page)."
        : `The server answered ${response.status}.`);
      throw new ApiError(message, response.status, data.error || `http_${response.status}`, data);
    }
    return data;
  }

  // --- What is a video: the same rules as studio/sniff.py ---------------------------------------

  const ISO_BOXES = ["ftyp", "moov", "mdat", "free", "skip", "wide", "pnot", "uuid"];
  const ascii = (bytes, from, to) => String.fromCharCode(...bytes.slice(from, to));
  const startsWith = (bytes, sig) => sig.every((b, i) => bytes[i] === b);

  function syncBytes(head, offset, packet) {
    const positions = [offset, offset + packet, offset + 2 * packet];
    if (head.length <= positions[1]) return false;
    return positions.filter((p) => p < head.length).every((p) => head[p] === 0x47);
  }

  function containerOf(head) {
    if (head.length >= 8 && ISO_BOXES.includes(ascii(head, 4, 8))) return "mp4";
    if (startsWith(head, [0x1a, 0x45, 0xdf, 0xa3])) return "matroska";
    if (ascii(head, 0, 4) === "RIFF" && ascii(head, 8, 12) === "AVI ") return "avi";
    if (startsWith(head, [0, 0, 1, 0xba]) || startsWith(head, [0, 0, 1, 0xb3])) return "mpeg-ps";
    if (syncBytes(head, 0, 188)) return "mpeg-ts";
    if (syncBytes(head, 4, 192)) return "m2ts";
    if (startsWith(head, [0x46, 0x4c, 0x56, 0x01])) return "flv";
    if (startsWith(head, [0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11])) return "asf";
    if (ascii(head, 0, 4) === "OggS") return "ogg";
    if (startsWith(head, [0x06, 0x0e, 0x2b, 0x34, 0x02, 0x05, 0x01, 0x01])) return "mxf";
    if (ascii(head, 0, 9) === "YUV4MPEG2") return "y4m";
    if (startsWith(head, [0x1f, 0x07, 0x00])) return "dv";
    return null;
  }

  function extensionOf(name) {
    const dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
  }

  function base64(bytes) {
    let binary = "";
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return btoa(binary);
  }

  async function fingerprintOf(file) {
    if (!(window.crypto && crypto.subtle)) return "";  // not a secure context: name+size+date only
    const buffer = await file.slice(0, FINGERPRINT_BYTES).arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", buffer);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // --- One file --------------------------------------------------------------------------------

  const STATE_LABELS = {
    ready: "Ready", queued: "Queued", checking: "Checking", uploading: "Uploading", waiting: "Waiting for network",
    completing: "Finishing", done: "Uploaded", failed: "Refused", cancelled: "Cancelled", error: "Stopped",
  };

  class Upload {
    constructor(file) {
      this.file = file;
      this.cancelled = false;
      this.session = null;
      this.xhrs = new Set();
      this.inflight = new Map();   // part number -> bytes sent so far
      this.urls = new Map();       // part number -> {url, until}
      this.pending = [];
      this.doneBytes = 0;
      this.samples = [];           // [time, bytes sent this session] for the speed
      this.sentThisSession = 0;
      this.lastPaint = 0;

      this.el = template.content.firstElementChild.cloneNode(true);
      const uid = `up-${Math.random().toString(36).slice(2, 9)}`;
      this.$ = (sel) => this.el.querySelector(sel);
      this.$(".upload-name").textContent = file.name;
      this.$(".upload-size").textContent = human(file.size);
      this.$(".upload-title-label").htmlFor = `${uid}-title`;
      this.$(".upload-title").id = `${uid}-title`;
      this.$(".upload-title").value = file.name.replace(/\.[^.]+$/, "").replace(/_/g, " ");
      this.$(".upload-bar").setAttribute("aria-label", `Upload of ${file.name}`);
      this.$(".upload-cancel").addEventListener("click", () => this.cancel());
      this.el.dataset.name = file.name;
    }

    setState(state, message) {
      this.state = state;
      this.el.dataset.state = state;
      this.$(".upload-state").textContent = STATE_LABELS[state] || state;
      this.$(".upload-cancel").textContent = state === "ready" ? "Remove" : "Cancel";
      this.$(".upload-cancel").hidden = ["done", "failed", "cancelled"].includes(state);
      this.$(".upload-title").disabled = state !== "ready";
      if (message !== undefined) this.say(message, ["failed", "error"].includes(state));
    }

    say(message, isError) {
      const el = this.$(".upload-message");
      el.textContent = message;
      el.classList.toggle("error", Boolean(isError));
      el.setAttribute("role", isError ? "alert" : "status");
    }

    refuse(message) {
      this.setState("failed", message);
      return false;
    }

    // Checks that need no server: extension, size, first bytes.
    async precheck() {
      const ext = extensionOf(this.file.name);
      if (!config.extensions.includes(ext)) {
        return this.refuse(`Not a video: “.${ext || "(none)"}” is not a video file extension.`);
      }
      if (this.file.size === 0) return this.refuse("This file is empty.");
      if (this.file.size > config.maxBytes) {
        return this.refuse(`Too large: ${human(this.file.size)}; the largest upload accepted is ${human(config.maxBytes)}.`);
      }
      this.head = new Uint8Array(await this.file.slice(0, config.headBytes).arrayBuffer());
      if (!containerOf(this.head)) {
        return this.refuse("Not a video: the file does not start like any video container Reelflow knows.");
      }
      return true;
    }

    async start() {
      this.setState("checking", "");
      try {
        if (!(await this.precheck()) || this.cancelled) return;
        const session = await api(config.startUrl, {
          filename: this.file.name,
          size: this.file.size,
          lastModified: this.file.lastModified,
          fingerprint: await fingerprintOf(this.file),
          contentType: this.file.type,
          title: this.$(".upload-title").value,
          profile: profileSelect.value,
          head: base64(this.head),
        });
        this.session = session;
        if (this.cancelled) { await this.abortOnServer(); return; }
        const until = Date.now() + session.expiresIn * 1000;
        Object.entries(session.partUrls || {}).forEach(([num, url]) => this.urls.set(Number(num), { url, until }));
        this.$(".upload-title").value = session.title;
        const stored = new Map(session.partsStored.map((p) => [p.number, p.size]));
        this.pending = [];
        for (let n = 1; n <= session.partsTotal; n += 1) {
          if (stored.get(n) === this.partSize(n)) this.doneBytes += this.partSize(n);
          else this.pending.push(n);
        }
        let note = session.notice || "";
        if (session.resumed) {
          note = `Resuming: ${session.partsTotal - this.pending.length} of ${session.partsTotal} parts were already stored.`;
        }
        this.setState("uploading", note);
        this.paint(true);
        await this.sendParts();
        if (this.cancelled) return;
        await this.complete();
      } catch (err) {
        if (this.cancelled) return;
        const refused = err instanceof ApiError && err.status >= 400 && err.status < 500;
        this.setState(refused ? "failed" : "error", err.message || String(err));
      }
    }

    partSize(n) {
      const { partSize, partsTotal } = this.session;
      return n < partsTotal ? partSize : this.file.size - partSize * (partsTotal - 1);
    }

    async sendParts() {
      const workers = Math.max(1, Math.min(config.parallelParts, this.pending.length));
      await Promise.all(Array.from({ length: workers }, () => this.worker()));
    }

    async worker() {
      while (!this.cancelled && this.pending.length) {
        const n = this.pending.shift();
        await this.sendPart(n);
      }
    }

    async urlFor(n) {
      const cached = this.urls.get(n);
      if (cached && cached.until > Date.now() + 30000) return cached.url;
      const batch = [n, ...this.pending.filter((p) => !this.urls.has(p)).slice(0, SIGN_BATCH - 1)];
      const answer = await api(this.session.partsUrl, { parts: batch });
      const until = Date.now() + answer.expiresIn * 1000;
      Object.entries(answer.urls).forEach(([num, url]) => this.urls.set(Number(num), { url, until }));
      return this.urls.get(n).url;
    }

    async sendPart(n) {
      for (let attempt = 1; ; attempt += 1) {
        if (this.cancelled) return;
        try {
          const url = await this.urlFor(n);
          await this.put(n, url);
          this.inflight.delete(n);
          this.doneBytes += this.partSize(n);
          this.paint(true);
          return;
        } catch (err) {
          this.inflight.delete(n);
          if (this.cancelled || (err && err.cancelled)) return;
          // A server refusal (expired session, cancelled elsewhere) ends the upload.
          if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
          // S3 said no: most likely the URL expired while waiting. Sign again.
          if (err && err.status >= 400 && err.status < 500) this.urls.delete(n);
          if (attempt >= MAX_PART_ATTEMPTS && navigator.onLine) {
            throw new Error(`Part ${n} failed ${attempt} times (${err.message || `HTTP ${err.status}`}). ` +
              "Choose the same file again to continue from the parts already stored.");
          }
          if (!navigator.onLine) {
            this.setState("waiting", "The network is gone; the upload continues when it is back.");
            await online();
            attempt = 0;
            this.setState("uploading", "Back online: continuing.");
          } else {
            await sleep(Math.min(20000, 500 * 2 ** attempt));
          }
        }
      }
    }

    put(n, url) {
      const start = (n - 1) * this.session.partSize;
      const blob = this.file.slice(start, start + this.partSize(n));
      return new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        this.xhrs.add(xhr);
        const done = () => this.xhrs.delete(xhr);
        xhr.open("PUT", url);
        let last = 0;
        xhr.upload.onprogress = (e) => {
          this.sentThisSession += e.loaded - last;
          last = e.loaded;
          this.inflight.set(n, e.loaded);
          this.paint(false);
        };
        xhr.onload = () => {
          done();
          if (xhr.status >= 200 && xhr.status < 300) {
            this.sentThisSession += blob.size - last;
            resolve();
          } else {
            this.sentThisSession -= last;
            reject({ status: xhr.status, message: `storage answered ${xhr.status}` });
          }
        };
        xhr.onerror = () => { done(); this.sentThisSession -= last; reject({ status: 0, message: "network error" }); };
        xhr.onabort = () => { done(); reject({ cancelled: true }); };
        xhr.send(blob);
      });
    }

    async complete() {
      this.setState("completing", "Joining the parts and checking the file…");
      let result;
      try {
        result = await api(this.session.completeUrl, {});
      } catch (err) {
        if (err.code !== "incomplete" || !Array.isArray(err.data.missing)) throw err;
        // S3 lacks a part we thought was sent: send those again, once.
        this.pending = err.data.missing.slice();
        this.pending.forEach((n) => { this.doneBytes -= this.partSize(n); });
        this.setState("uploading", "Some parts were missing in storage; sending them again.");
        await this.sendParts();
        if (this.cancelled) return;
        result = await api(this.session.completeUrl, {});
      }
      this.$(".upload-bar").value = 100;
      this.setState("done", `Uploaded. “${result.title}” is being encoded.`);
      const link = this.$(".upload-link");
      link.href = result.assetUrl;
      link.hidden = false;
    }

    paint(force) {
      const now = performance.now();
      if (!force && now - this.lastPaint < 200) return;
      this.lastPaint = now;
      let sent = this.doneBytes;
      this.inflight.forEach((b) => { sent += b; });
      sent = Math.min(sent, this.file.size);
      this.samples.push([now, this.sentThisSession]);
      while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
      const [t0, b0] = this.samples[0];
      const speed = now > t0 ? ((this.sentThisSession - b0) / (now - t0)) * 1000 : 0;
      const left = speed > 0 ? (this.file.size - sent) / speed : Infinity;
      this.$(".upload-bar").value = (100 * sent) / this.file.size;
      this.$(".upload-stats").textContent =
        `${human(sent)} of ${human(this.file.size)} · ${speed > 0 ? `${human(speed)}/s` : "–"} · ${clock(left)} left`;
    }

    async abortOnServer() {
      if (!this.session) return;
      try {
        await api(this.session.abortUrl, {});
      } catch (err) {
        this.say(`Cancelled here, but the server could not be told: ${err.message}`, true);
      }
    }

    async cancel() {
      if (this.state === "ready") { this.el.remove(); files.delete(this); refreshQueue(); return; }
      this.cancelled = true;
      this.xhrs.forEach((xhr) => xhr.abort());
      this.setState("cancelled", "Cancelling…");
      await this.abortOnServer();
      this.setState("cancelled", this.session ? "Cancelled; the parts already sent were deleted." : "Cancelled.");
      refreshQueue();
    }
  }

  // --- The queue -------------------------------------------------------------------------------

  const files = new Set();
  let running = 0;

  function refreshQueue() {
    queueEmpty.hidden = files.size > 0;
    startAll.disabled = ![...files].some((u) => u.state === "ready");
  }

  function add(fileList) {
    Array.from(fileList).forEach((file) => {
      const upload = new Upload(file);
      files.add(upload);
      queue.appendChild(upload.el);
      upload.setState("ready", "");
    });
    refreshQueue();
    if (!startAll.disabled) startAll.focus();
  }

  async function pump() {
    while (running < MAX_FILES_AT_ONCE) {
      const next = [...files].find((u) => u.state === "queued");
      if (!next) return;
      running += 1;
      next.start().finally(() => { running -= 1; pump(); });
    }
  }

  startAll.addEventListener("click", () => {
    files.forEach((u) => { if (u.state === "ready") { u.setState("queued", "Waiting for its turn…"); } });
    refreshQueue();
    pump();
  });

  fileInput.addEventListener("change", () => { add(fileInput.files); fileInput.value = ""; });
  ["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (e) => {
    e.preventDefault();
    dropzone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => dropzone.addEventListener(type, () => dropzone.classList.remove("over")));
  dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) add(e.dataTransfer.files);
  });
  // Dropping a file outside the zone must not navigate away from the uploads.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  window.addEventListener("beforeunload", (e) => {
    if ([...files].some((u) => ["checking", "uploading", "waiting", "completing"].includes(u.state))) {
      e.preventDefault();
      e.returnValue = "";
    }
  });

  document.querySelectorAll("button.discard").forEach((button) => button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(button.dataset.abortUrl, {});
      button.closest("li").remove();
    } catch (err) {
      button.disabled = false;
      button.insertAdjacentText("afterend", ` ${err.message}`);
    }
  }));

  window.reelflowUploads = files;  // for tests and the curious
  refreshQueue();
})();
