"""Running ffmpeg: progress reports, cancel and timeout, CPU accounting, typed failures."""

from __future__ import annotations

import ctypes
import math
import os
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.ffmpeg.errors import (
    _OUTPUT_NOT_FINISHED,
    _STDERR_LINE_MAX,
    _STDERR_TAIL_LINES,
    MediaCancelledError,
    TransientMediaError,
    _decode,
    _tail_text,
    classify_failure,
)
from pipeline.ffmpeg.mediainfo import _float, _int
from pipeline.ffmpeg.versions import ffmpeg_binary


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report. ``percent`` is 0-100 (None when no total is known)."""

    frame: int
    fps: float
    speed: float | None
    percent: float | None
    eta_s: float | None
    out_time_s: float
    done: bool = False


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a finished ffmpeg run went; ``cpu_s`` is the child's user+system CPU time.

    ``frames`` is ffmpeg's own count of video frames written (from the last progress
    block), so a unit can check its frame count without another ffprobe process.
    """

    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    max_rss_kb: int
    command: str
    frames: int | None = None

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL ffmpeg if the worker process dies.

    RQ kills a work horse that overruns its timeout with SIGKILL; without this the ffmpeg it
    started would keep encoding, orphaned, and fight the retry for the CPU.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup(niceness: int) -> Callable[[], None] | None:
    if not niceness:
        return _die_with_parent if _LIBC is not None else None

    def setup() -> None:
        _die_with_parent()
        os.nice(niceness)

    return setup


class _ProgressParser:
    """Turns ``-progress`` key=value blocks into rate-limited Progress callbacks."""

    def __init__(
        self,
        *,
        on_progress: Callable[[Progress], None] | None,
        total_frames: int | None,
        duration_s: float | None,
        interval_s: float,
        started: float,
    ) -> None:
        self.on_progress = on_progress
        self.total_frames = total_frames
        self.duration_s = duration_s
        self.interval_s = interval_s
        self.started = started
        self.block: dict[str, str] = {}
        self.final: dict[str, str] = {}
        self.last_emit = -math.inf
        self.best_percent = 0.0
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for raw in lines:
            key, sep, value = raw.decode("utf-8", errors="replace").strip().partition("=")
            if not sep:
                continue
            self.block[key] = value
            if key == "progress":
                self.final = self.block
                self._emit(done=value == "end")
                self.block = {}

    def _emit(self, *, done: bool) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not done and now - self.last_emit < self.interval_s:
            return
        self.last_emit = now
        block = self.block
        frame = _int(block.get("frame")) or 0
        out_us = _int(block.get("out_time_us"))
        out_time_s = max(0.0, out_us / 1e6) if out_us is not None else 0.0
        speed_text = (block.get("speed") or "").rstrip("x").strip()
        speed = _float(speed_text) if speed_text not in {"", "N/A"} else None
        percent: float | None = None
        if self.total_frames:
            percent = 100.0 * frame / self.total_frames
        elif self.duration_s:
            percent = 100.0 * out_time_s / self.duration_s
        if percent is not None:
            percent = 100.0 if done else min(100.0, max(self.best_percent, percent))
            self.best_percent = percent
        eta: float | None = None
        if done:
            eta = 0.0
        elif percent and percent > 0:
            elapsed = now - self.started
            eta = elapsed * (100.0 - percent) / percent
        self.on_progress(
            Progress(
                frame=frame,
                fps=_float(block.get("fps")) or 0.0,
                speed=speed,
                percent=percent,
                eta_s=eta,
                out_time_s=out_time_s,
                done=done,
            )
        )


def run_ffmpeg(
    args: Sequence[str],
    *,
    on_progress: Callable[[Progress], None] | None = None,
    total_frames: int | None = None,
    duration_s: float | None = None,
    cancel_event: threading.Event | None = None,
    timeout: float | None = None,
    progress_interval_s: float = 0.5,
    kill_grace_s: float = 0.5,
    binary: str | None = None,
    niceness: int = 0,
) -> RunResult:
    """Run ffmpeg with ``args`` (as returned by the builders) and report progress.

    * ``on_progress`` is called at most once per ``progress_interval_s`` (plus once at the
      end), so a caller can forward every call to the channel layer without flooding it.
      Percent comes from ``total_frames`` when given, else ``duration_s``.
    * Setting ``cancel_event`` stops ffmpeg (SIGTERM, then SIGKILL after ``kill_grace_s``)
      and raises MediaCancelledError; passing ``timeout`` does the same and raises
      TransientMediaError.
    * A non-zero exit raises the typed error from :func:`classify_failure` with the last
      lines of stderr.
    * CPU time comes from the child's own rusage (``os.wait4``), so concurrent runs in other
      threads do not blur it.
    * ``niceness`` lowers ffmpeg's CPU priority (work that must yield to encoding).
    """
    # Written by hand: these global flags wrap an argument list already compiled (by a
    # builder through ffmpeg-python, or by a caller), not a graph ffmpeg-python could extend.
    argv = [
        binary or ffmpeg_binary(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-progress", "pipe:1", "-stats_period", f"{max(0.1, progress_interval_s):g}", "-y",
        *args,
    ]  # fmt: skip
    command = shlex.join(argv)
    started = time.monotonic()
    proc = _start(argv, command=command, niceness=niceness)
    parser = _ProgressParser(
        on_progress=on_progress,
        total_frames=total_frames,
        duration_s=duration_s,
        interval_s=progress_interval_s,
        started=started,
    )
    watch = _Watch(
        proc,
        parser=parser,
        cancel_event=cancel_event,
        deadline=started + timeout if timeout else None,
        kill_grace_s=kill_grace_s,
    )
    usage = watch.wait()
    tail = _tail_text(watch.stderr_lines)
    _raise_for_failure(watch.stop_reason, returncode=proc.returncode, tail=tail, command=command, timeout=timeout)
    return RunResult(
        wall_s=time.monotonic() - started,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        max_rss_kb=usage.ru_maxrss,
        command=command,
        frames=_int(parser.final.get("frame")),
    )


def _start(argv: list[str], *, command: str, niceness: int) -> subprocess.Popen:
    env = None
    if "SVT_LOG" not in os.environ:
        # SVT-AV1 prints its banner straight to stderr; keep the tail for real errors.
        env = {**os.environ, "SVT_LOG": "1"}
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_child_setup(niceness),
        )
    except OSError as exc:
        raise TransientMediaError(
            f"ffmpeg could not be started on this worker: {exc}", command=command
        ) from exc


class _Watch:
    """Reads a running ffmpeg's progress (stdout) and stderr tail without blocking, and stops
    it when its cancel event is set or its deadline passes."""

    def __init__(
        self,
        proc: subprocess.Popen,
        *,
        parser: _ProgressParser,
        cancel_event: threading.Event | None,
        deadline: float | None,
        kill_grace_s: float,
    ) -> None:
        self.proc = proc
        self.parser = parser
        self.cancel_event = cancel_event
        self.deadline = deadline
        self.kill_grace_s = kill_grace_s
        self.stderr_lines: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self.stderr_partial = b""
        self.stop_reason: str | None = None
        self.kill_at: float | None = None

    def wait(self):
        """Pump both pipes until ffmpeg closes them, then reap it; returns its rusage."""
        proc = self.proc
        selector = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - set by PIPE
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        try:
            while selector.get_map():
                self._stop_if_due(time.monotonic())
                for key, _ in selector.select(timeout=0.05):
                    self._read(selector, key.fileobj)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            selector.close()
            if proc.returncode is None:  # an exception escaped the loop (e.g. from on_progress)
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        if self.stderr_partial:
            self.stderr_lines.append(_decode(self.stderr_partial).rstrip())
        return usage

    def _stop_if_due(self, now: float) -> None:
        if self.stop_reason is None:
            if self.cancel_event is not None and self.cancel_event.is_set():
                self.stop_reason = "cancelled"
            elif self.deadline is not None and now >= self.deadline:
                self.stop_reason = "timeout"
            if self.stop_reason is not None:
                self.proc.terminate()
                self.kill_at = now + self.kill_grace_s
        elif self.kill_at is not None and now >= self.kill_at:
            self.proc.kill()
            self.kill_at = None

    def _read(self, selector: selectors.BaseSelector, stream) -> None:
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            selector.unregister(stream)
        elif stream is self.proc.stdout:
            self.parser.feed(data)
        else:
            *lines, partial = (self.stderr_partial + data).split(b"\n")
            self.stderr_lines.extend(_decode(line).rstrip() for line in lines)
            self.stderr_partial = partial[-_STDERR_LINE_MAX * 4 :]


def _raise_for_failure(
    stop_reason: str | None, *, returncode: int, tail: str, command: str, timeout: float | None
) -> None:
    if stop_reason == "cancelled":
        raise MediaCancelledError("ffmpeg was cancelled", stderr_tail=tail, command=command)
    if stop_reason == "timeout":
        raise TransientMediaError(
            f"ffmpeg did not finish within {timeout:g} s and was stopped",
            stderr_tail=tail,
            command=command,
        )
    if returncode != 0:
        raise classify_failure(returncode=returncode, stderr_tail=tail, command=command)
    if _OUTPUT_NOT_FINISHED.search(tail):
        # ffmpeg 5.1 exits 0 when the trailer (an MP4's index) cannot be written, e.g. on a
        # full disk: the file looks written and is unplayable. Never let it pass as output.
        raise classify_failure(returncode=1, stderr_tail=tail, command=command)
