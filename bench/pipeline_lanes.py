"""(c) of bench/pipeline.py: a job's own units as bare ffmpeg processes in lanes, on the local
source file, sharing decoded chunks as the pipeline does."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from media_bench import children_cpu


def cpu_by_rendition(by_rendition: dict[str, float]) -> str:
    """"aac-128k 1.6, h264-240p 4.7, ...": the same form for the pipeline's units and the bare ones."""
    return ", ".join(f"{name} {cpu:.1f}" for name, cpu in sorted(by_rendition.items()))


def bare_command(unit, *, job, source: Path, out: Path, video, fps, frames: int, threads: int, writers: set[int], written: dict) -> list[str]:
    """A unit's ffmpeg arguments on the local source; the first unit of a chunk writes its decoded
    frames, the others wait for them and read them."""
    from pipeline import ffmpeg
    from pipeline.media import audio_rendition, chunk_plan, video_rendition

    params = unit.rendition.params
    target = out / f"lane-{unit.pk}.mp4"
    if unit.chunk is None:
        return ffmpeg.build_audio_command(input_url=source, output_path=target, rendition=audio_rendition(params),
                                          video_start_offset_s=video.start_offset_s, duration_s=float(frames / fps))
    rendition = video_rendition(params)
    chunk = chunk_plan(unit.chunk)
    cache = out / f"chunk-{chunk.index}.mkv"
    extra = {}
    if chunk.index not in writers:
        writers.add(chunk.index)
        extra["cache_output"] = cache
    else:
        written[chunk.index].wait()
        extra["cached_input"] = cache
    return ffmpeg.build_unit_command(input_url=source, output_path=target, chunk=chunk, rendition=rendition, fps=fps,
                                     segment_seconds=job.segment_seconds, source=video, threads=threads, **extra)


def lanes(job, source: Path, out: Path, lanes_n: int) -> tuple[float, float]:
    """(c) The job's own units as bare ffmpeg processes in ``lanes_n`` lanes, longest first, on
    the local source file, sharing decoded chunks the way the pipeline does (the first unit of
    a chunk writes them, the others wait for them): no queue, no S3, no database, no packaging.
    What (b) spends beyond (c) is the pipeline's own overhead; what (c) spends beyond (a) is
    the price of encoding in separate processes per (chunk, rendition)."""
    import queue
    import threading

    from pipeline.media import planned_fps, video_info_from_json
    from pipeline.models import Unit
    from pipeline.steps.units import encoder_threads

    video = video_info_from_json(job.asset.probe["video"])
    fps = planned_fps(video)
    frames = sum(job.chunks.values_list("frame_count", flat=True))
    encoder_thread_n = encoder_threads(cpus=os.cpu_count() or 1, workers=lanes_n)  # as the workers choose
    todo: queue.Queue = queue.Queue()
    written = {c.index: threading.Event() for c in job.chunks.all()}
    writers: set[int] = set()
    for unit in Unit.objects.filter(job=job).select_related("rendition", "chunk").order_by("-cost", "pk"):
        todo.put(unit)

    def command(unit) -> list[str]:
        return bare_command(unit, job=job, source=source, out=out, video=video, fps=fps, frames=frames, threads=encoder_thread_n,
                            writers=writers, written=written)

    failures: list[BaseException] = []
    by_rendition: dict[str, float] = {}
    lock = threading.Lock()

    def lane() -> None:
        while not failures:
            try:
                unit = todo.get_nowait()
            except queue.Empty:
                return
            try:
                proc = subprocess.Popen(["ffmpeg", "-v", "error", "-y", *command(unit)])
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode:
                    raise subprocess.CalledProcessError(proc.returncode, proc.args)
                with lock:
                    by_rendition[unit.rendition.name] = by_rendition.get(unit.rendition.name, 0) + usage.ru_utime + usage.ru_stime
            except BaseException as exc:  # the other lane must not wait for this chunk forever
                failures.append(exc)
                for event in written.values():
                    event.set()
                raise
            if unit.chunk is not None:
                written[unit.chunk.index].set()

    cpu0, t0 = children_cpu(), time.monotonic()
    threads = [threading.Thread(target=lane) for _ in range(lanes_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"a bare unit command failed: {failures[0]}")
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    for path in out.glob("lane-*"):
        path.unlink()
    for path in out.glob("chunk-*.mkv"):
        path.unlink()
    print("    (c) CPU-s by rendition: " + cpu_by_rendition(by_rendition), flush=True)
    return wall, cpu
