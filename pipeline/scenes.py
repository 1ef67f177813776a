"""Scene changes near planned chunk boundaries, from ffmpeg's scene score.

Only a few frames around each candidate boundary are decoded, never the whole title: for a
boundary at frame ``b``, the frames ``b - tolerance - 1`` to ``b + tolerance``, read exactly as a
unit reads its chunk (:func:`pipeline.ffmpeg.chunk_input`: the planned frame grid, deinterlaced,
rotated), scaled to 160 pixels wide and scored by the ``select`` filter (``lavfi.scene_score``,
0 for the same picture, 1 for nothing in common; a hard cut scores 0.3 and up, motion in
``testsrc2`` 0.02). One ffmpeg per planned cut reads the windows of all its candidates, with one
decoder thread each and the deblocking filter skipped (about a tenth less decode, and nothing
a 160-pixel picture would show); the cuts run in parallel, one process per CPU.

What it costs is mostly the decoder's run-up from the source keyframe before each window
(ffmpeg's accurate seek decodes from there): on the 60 s 720p25 benchmark source (a keyframe
every 2 s), 3 windows around one cut cost 0.39-0.43 CPU-s, against 3.7 CPU-s for scoring the
whole title (docs/pipeline.md).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pipeline import ffmpeg
from pipeline.chunking import Chunk, SceneChange, frame_at

__all__ = ["SCENE_THRESHOLD", "SceneScan", "scan_boundaries", "tolerance_frames"]

# ffmpeg's documentation picks cuts with gt(scene, 0.3-0.4); a moving test pattern scores 0.02.
SCENE_THRESHOLD = 0.3
# A scene change this close to a segment boundary counts as at the boundary: the few frames of
# the other picture on the wrong side of the join are hidden by the cut itself.
TOLERANCE_S = Fraction(1, 10)
SCALE_WIDTH = 160


def tolerance_frames(fps: Fraction) -> int:
    return frame_at(TOLERANCE_S, fps)


@dataclass(frozen=True, slots=True)
class SceneScan:
    """The strongest change near each boundary frame scanned (``changes``, by boundary frame),
    and what finding them cost: ffmpeg CPU and wall time, and one of the commands."""

    changes: dict[int, SceneChange]
    cpu_s: float
    wall_s: float
    command: str


def _window(boundary: int, *, tolerance: int, total_frames: int) -> tuple[int, int]:
    """(first frame, frame count) read for one boundary: its predecessor too, which the first
    scored frame is compared with."""
    start = max(0, boundary - tolerance - 1)
    end = min(total_frames, boundary + tolerance + 1)
    return start, end - start


def _command(
    *, input_url: str, source: ffmpeg.VideoInfo, fps: Fraction, windows: list[tuple[int, int]], folder: Path
) -> list[str]:
    args: list[str] = ["-filter_complex_threads", "1"]
    graph: list[str] = []
    outputs: list[str] = []
    for j, (start, count) in enumerate(windows):
        chunk = Chunk(
            index=j,
            start_s=float(start / fps),
            end_s=float((start + count) / fps),
            start_frame=start,
            frame_count=count,
        )
        read = ffmpeg.chunk_input(input_url=input_url, chunk=chunk, fps=fps, source=source)
        args += ["-threads", "1", "-skip_loop_filter", "all", *read.args]
        chain = [
            *read.filters,
            f"scale={SCALE_WIDTH}:-2",
            "select='gte(scene,0)'",
            f"metadata=print:file={folder / f'w{j}.txt'}",
        ]
        graph.append(f"[{j}:{source.index}]{','.join(chain)}[o{j}]")
        outputs += ["-map", f"[o{j}]", "-frames:v", str(count), "-f", "null", "-"]
    return [*args, "-filter_complex", ";".join(graph), *outputs]


def _scores(path: Path) -> dict[int, float]:
    """Frame offset (the pts on the 1/fps grid) -> scene score, from metadata=print's file."""
    scores: dict[int, float] = {}
    pts: int | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("frame:"):
            fields = dict(part.split(":", 1) for part in line.split() if ":" in part)
            pts = int(fields["pts"]) if fields.get("pts", "").lstrip("-").isdigit() else None
        elif line.startswith("lavfi.scene_score=") and pts is not None:
            scores[pts] = float(line.partition("=")[2])
    return scores


def _strongest(boundary: int, start: int, scores: dict[int, float], tolerance: int) -> SceneChange:
    """The strongest change among the frames within ``tolerance`` of ``boundary``; ties go to
    the frame nearest the boundary, then the earlier."""
    found = [
        (score, -abs(frame - boundary), -frame, frame)
        for offset, score in scores.items()
        if abs((frame := start + offset) - boundary) <= tolerance and frame > start
    ]
    if not found:
        raise ffmpeg.PermanentMediaError(f"no frames were decoded around frame {boundary}")
    score, _, _, frame = max(found)
    return SceneChange(frame=frame, score=score)


def scan_boundaries(
    *,
    input_url: str,
    source: ffmpeg.VideoInfo,
    fps: Fraction,
    groups: Sequence[Sequence[int]],
    total_frames: int,
    timeout_s: float,
    threads: int | None = None,
) -> SceneScan:
    """The strongest scene change within the tolerance of each boundary frame in ``groups``
    (one ffmpeg per group: a planned cut and its candidates). Raises ``ffmpeg.MediaError`` when
    a run fails or the whole scan takes longer than ``timeout_s`` (the others are stopped)."""
    fps = Fraction(fps)
    tolerance = tolerance_frames(fps)
    groups = [list(g) for g in groups if g]
    started = time.monotonic()
    deadline = started + timeout_s
    stop = threading.Event()
    results: list[tuple[dict[int, SceneChange], ffmpeg.RunResult]] = []

    def scan(boundaries: list[int]) -> tuple[dict[int, SceneChange], ffmpeg.RunResult]:
        windows = [_window(b, tolerance=tolerance, total_frames=total_frames) for b in boundaries]
        with tempfile.TemporaryDirectory(prefix="reelflow-scenes-") as folder:
            args = _command(input_url=input_url, source=source, fps=fps, windows=windows, folder=Path(folder))
            try:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ffmpeg.TransientMediaError("no time left")
                run = ffmpeg.run_ffmpeg(args, timeout=left, cancel_event=stop)
            except ffmpeg.MediaError as exc:
                stop.set()  # one failure is the scan's: stop the other runs
                if time.monotonic() >= deadline and not isinstance(exc, ffmpeg.MediaCancelledError):
                    raise ffmpeg.TransientMediaError(
                        f"scene analysis did not finish within {timeout_s:g} s", command=exc.command
                    ) from exc
                raise
            changes = {}
            for j, (boundary, (start, _)) in enumerate(zip(boundaries, windows, strict=True)):
                path = Path(folder) / f"w{j}.txt"
                scores = _scores(path) if path.exists() else {}
                changes[boundary] = _strongest(boundary, start, scores, tolerance)
        return changes, run

    workers = max(1, min(len(groups), threads or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scenes") as pool:
        futures = [pool.submit(scan, g) for g in groups]
        errors: list[ffmpeg.MediaError] = []
        for future in futures:
            try:
                results.append(future.result())
            except ffmpeg.MediaError as exc:
                stop.set()
                errors.append(exc)
    if errors:
        # The first real failure, not the runs it stopped.
        real = [e for e in errors if not isinstance(e, ffmpeg.MediaCancelledError)]
        raise (real or errors)[0]
    changes: dict[int, SceneChange] = {}
    for found, _ in results:
        changes.update(found)
    return SceneScan(
        changes=changes,
        cpu_s=sum(run.cpu_s for _, run in results),
        wall_s=time.monotonic() - started,
        command=results[0][1].command if results else "",
    )
