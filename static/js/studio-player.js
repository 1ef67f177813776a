// Reelflow studio: the player. hls.js (vendored, static/vendor/hls.js) where the browser has
// Media Source Extensions, the browser's own HLS otherwise. Playlists come from the studio:hls
// view, which checks access and signs every segment URL. Custom controls so the seek bar can
// show thumbnails from the package's sprite (sprite.vtt + sprite.jpg).
(() => {
  "use strict";

  function clock(seconds) {
    if (!isFinite(seconds)) return "0:00";
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }

  function vttTime(text) {
    const parts = text.trim().split(":").map(Number);
    return parts.reduce((acc, v) => acc * 60 + v, 0);
  }

  // WebVTT cues of the form "<url>#xywh=x,y,w,h".
  function parseSpriteVtt(text) {
    const cues = [];
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i += 1) {
      if (!lines[i].includes("-->")) continue;
      const [start, end] = lines[i].split("-->").map((t) => vttTime(t.split(" ").filter(Boolean)[0] || t));
      const target = (lines[i + 1] || "").trim();
      const hash = target.lastIndexOf("#xywh=");
      if (hash < 0) continue;
      const [x, y, w, h] = target.slice(hash + 6).split(",").map(Number);
      cues.push({ start, end, url: target.slice(0, hash), x, y, w, h });
    }
    return cues;
  }

  function init(section) {
    if (!section || section.dataset.ready) return;
    section.dataset.ready = "1";
    const player = section.querySelector(".player");
    const video = section.querySelector("video");
    const play = section.querySelector(".play");
    const mute = section.querySelector(".mute");
    const full = section.querySelector(".fullscreen");
    const seek = section.querySelector(".seek");
    const quality = section.querySelector(".quality");
    const current = section.querySelector(".current");
    const total = section.querySelector(".total");
    const preview = section.querySelector(".preview");
    const previewImg = section.querySelector(".preview-img");
    const previewTime = section.querySelector(".preview-time");
    const message = section.querySelector(".player-message");
    const src = section.dataset.hls;
    let hls = null;
    let cues = [];
    let dragging = false;

    const say = (text, isError) => {
      message.textContent = text;
      message.classList.toggle("error", Boolean(isError));
    };

    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ enableWorker: true });
      hls.loadSource(src);
      hls.attachMedia(video);
      hls.on(window.Hls.Events.MANIFEST_PARSED, (_event, data) => {
        quality.replaceChildren(new Option("Auto", "-1"));
        data.levels
          .map((level, index) => ({ level, index }))
          .sort((a, b) => (b.level.height || 0) - (a.level.height || 0))
          .forEach(({ level, index }) => {
            const kbps = Math.round((level.bitrate || 0) / 1000);
            quality.appendChild(new Option(`${level.height}p · ${kbps} kb/s`, String(index)));
          });
      });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, (_event, data) => {
        const level = hls.levels[data.level];
        section.dataset.level = String(data.level);
        quality.options[0].textContent = hls.autoLevelEnabled && level ? `Auto (${level.height}p)` : "Auto";
      });
      hls.on(window.Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
          say("The network stalled; trying again…", true);
          hls.startLoad();
        } else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          say("Recovering from a playback error…", true);
          hls.recoverMediaError();
        } else {
          say(`This video cannot be played here (${data.details}).`, true);
          hls.destroy();
        }
      });
      quality.addEventListener("change", () => {
        hls.currentLevel = Number(quality.value);
        say(quality.value === "-1" ? "Quality: automatic." : `Quality: ${quality.selectedOptions[0].textContent}.`);
      });
      section.dataset.engine = "hls.js";
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
      quality.replaceChildren(new Option("Automatic (chosen by the browser)", "-1"));
      quality.disabled = true;
      section.dataset.engine = "native";
    } else {
      say("This browser can play neither HLS nor Media Source Extensions.", true);
      section.dataset.engine = "none";
    }

    // A preview has no sprite yet: it is cut when the job is packaged.
    if (section.dataset.sprite) {
      fetch(section.dataset.sprite, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.text() : ""))
        .then((text) => { cues = parseSpriteVtt(text); })
        .catch(() => { cues = []; });
    }

    // --- Controls --------------------------------------------------------------------------

    const toggle = () => {
      if (video.paused || video.ended) {
        video.play().catch((err) => say(`Playback did not start: ${err.message}`, true));
      } else {
        video.pause();
      }
    };
    play.addEventListener("click", toggle);
    video.addEventListener("click", toggle);
    video.addEventListener("play", () => { play.textContent = "❚❚"; play.setAttribute("aria-label", "Pause"); say(""); });
    video.addEventListener("pause", () => { play.textContent = "▶"; play.setAttribute("aria-label", "Play"); });
    video.addEventListener("waiting", () => say("Loading…"));
    video.addEventListener("playing", () => say(""));

    mute.addEventListener("click", () => { video.muted = !video.muted; });
    video.addEventListener("volumechange", () => {
      mute.textContent = video.muted ? "Unmute" : "Mute";
      mute.setAttribute("aria-pressed", String(video.muted));
    });

    full.addEventListener("click", () => {
      if (document.fullscreenElement) document.exitFullscreen();
      else if (player.requestFullscreen) player.requestFullscreen();
    });

    const duration = () => (isFinite(video.duration) ? video.duration : 0);
    video.addEventListener("loadedmetadata", () => { total.textContent = clock(duration()); });
    video.addEventListener("durationchange", () => { total.textContent = clock(duration()); });
    video.addEventListener("timeupdate", () => {
      current.textContent = clock(video.currentTime);
      if (!dragging && duration()) {
        seek.value = String(Math.round((video.currentTime / duration()) * 1000));
        seek.setAttribute("aria-valuetext", clock(video.currentTime));
      }
    });

    seek.addEventListener("input", () => {
      dragging = true;
      const t = (Number(seek.value) / 1000) * duration();
      seek.setAttribute("aria-valuetext", clock(t));
      showPreview(t, Number(seek.value) / 1000);
    });
    seek.addEventListener("change", () => {
      dragging = false;
      video.currentTime = (Number(seek.value) / 1000) * duration();
      hidePreview();
    });
    seek.addEventListener("pointermove", (e) => {
      const rect = seek.getBoundingClientRect();
      const f = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
      showPreview(f * duration(), f);
    });
    seek.addEventListener("pointerleave", () => { if (!dragging) hidePreview(); });
    seek.addEventListener("blur", hidePreview);

    function showPreview(t, fraction) {
      if (!duration()) return;
      previewTime.textContent = clock(t);
      const cue = cues.find((c) => t >= c.start && t < c.end) || (cues.length && t >= cues[cues.length - 1].start ? cues[cues.length - 1] : null);
      if (cue) {
        previewImg.hidden = false;
        previewImg.style.width = `${cue.w}px`;
        previewImg.style.height = `${cue.h}px`;
        previewImg.style.backgroundImage = `url("${cue.url}")`;
        previewImg.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
      } else {
        previewImg.hidden = true;
      }
      preview.hidden = false;
      preview.style.left = `${fraction * 100}%`;
    }

    function hidePreview() { preview.hidden = true; }

    player.addEventListener("keydown", (e) => {
      if (e.target.tagName === "SELECT" || (e.target === seek && ["ArrowLeft", "ArrowRight"].includes(e.key))) return;
      const key = e.key.toLowerCase();
      if (key === " " || key === "k") {
        if (e.target.tagName === "BUTTON" && key === " ") return;  // the button handles its own Space
        e.preventDefault();
        toggle();
      } else if (key === "arrowleft" || key === "arrowright") {
        e.preventDefault();
        video.currentTime = Math.min(duration(), Math.max(0, video.currentTime + (key === "arrowleft" ? -5 : 5)));
      } else if (key === "m") {
        video.muted = !video.muted;
      } else if (key === "f") {
        full.click();
      }
    });

    section.player = { video, hls };
  }

  window.ReelflowPlayer = { init };
  document.addEventListener("DOMContentLoaded", () => init(document.getElementById("player")));
})();
