// The embed's player: hls.js where the browser has Media Source Extensions, native HLS
// otherwise (Safari, iOS); dash.js over the MPD when the embed asks for DASH (?player=dash).
// Keys: Space/K play-pause, left/right 5 s, M mute, F full screen.
(function () {
  "use strict";
  const video = document.getElementById("player");
  const config = JSON.parse(document.getElementById("embed-config").textContent);

  if (config.player === "dash" && window.dashjs) {
    const dash = window.dashjs.MediaPlayer().create();
    dash.initialize(video, config.dash, false);
    dash.on(window.dashjs.MediaPlayer.events.ERROR, function (event) {
      video.setAttribute("data-error", String((event.error && event.error.message) || "error"));
    });
    window.reelflowDash = dash;
  } else if (window.Hls && window.Hls.isSupported()) {
    const hls = new window.Hls();
    hls.loadSource(config.hls);
    hls.attachMedia(video);
    hls.on(window.Hls.Events.ERROR, function (_event, data) {
      if (data.fatal) {
        video.setAttribute("data-error", data.details || "error");
      }
    });
    window.reelflowHls = hls;
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = config.hls;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === " " || key === "k") {
      if (video.paused) { video.play(); } else { video.pause(); }
    } else if (key === "arrowleft") {
      video.currentTime = Math.max(0, video.currentTime - 5);
    } else if (key === "arrowright") {
      video.currentTime = Math.min(video.duration || Infinity, video.currentTime + 5);
    } else if (key === "m") {
      video.muted = !video.muted;
    } else if (key === "f") {
      if (document.fullscreenElement) { document.exitFullscreen(); } else { video.requestFullscreen(); }
    } else {
      return;
    }
    event.preventDefault();
  });
})();
