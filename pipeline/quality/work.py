"""The heavy work of quality measurement, run inside RQ workers (the "quality" queue): measure
one chunk of a batch of video renditions against the same frames of the source with one
ffmpeg run, store each rendition's per-frame values as an S3 artifact, and hand the numbers to
pipeline.quality.services.

Bytes only move through S3: ffmpeg reads the units' outputs and the source through presigned
URLs, or the source's frames from this machine's decoded copy of the chunk when a unit left
one (:mod:`pipeline.decoded_cache`). State changes are pipeline.quality.services', under its
row locks.
"""

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from django.conf import settings
from django.db.models import Sum

from core import s3
from pipeline import decoded_cache, ffmpeg, progress, scheduling
from pipeline.chunking import Chunk as ChunkPlan
from pipeline.chunking import segment_frames
from pipeline.media import chunk_plan, planned_fps, source_location, video_info_from_json
from pipeline.models import Artifact, Chunk, QualityTask, Unit
from pipeline.quality import metrics, selectors
from pipeline.quality import services as quality_services
from pipeline.services.common import artifact_record

logger = logging.getLogger(__name__)

URL_SECONDS = 12 * 3600
# Measuring ffmpeg runs at a lower CPU priority: on a machine that also encodes, units and
# packaging get the CPU first and measurements take what is left.
NICENESS = 10
_THREADS_TTL_S = 60.0
_threads_cache: tuple[float, int] | None = None


def _work_dir() -> str | None:
    return os.environ.get("REELFLOW_WORK_DIR") or None


def _threads() -> int:
    """``REELFLOW_QC_THREADS``, or the CPUs shared among the encode workers registered from
    this host, as a unit gets them (one each for 2 workers on 2 CPUs): where every CPU is busy,
    more threads only add overhead. Looked up once a minute."""
    global _threads_cache
    if settings.REELFLOW_QC_THREADS > 0:
        return settings.REELFLOW_QC_THREADS
    now = time.monotonic()
    if _threads_cache is None or _threads_cache[0] < now:
        cpus = os.cpu_count() or 1
        workers = scheduling.encode_workers(host=scheduling.this_host())
        _threads_cache = (now + _THREADS_TTL_S, max(1, cpus // workers) if workers else cpus)
    return _threads_cache[1]


def artifact_key(task: QualityTask) -> str:
    return f"{task.job.output_prefix}/quality/{task.rendition.name}/{task.chunk.index:05d}.json"


@dataclass
class _Chunk:
    """What every measurement of one chunk shares."""

    video: ffmpeg.VideoInfo
    fps: Fraction
    plan: ChunkPlan
    size: tuple[int, int]
    tool: metrics.QcTool
    step: int
    source_url: str
    cached: str | None  # this machine's decoded copy of the chunk's source frames, if any


def _chunk_context(task: QualityTask, units: dict[int, Unit]) -> _Chunk:
    asset = task.job.asset
    video = video_info_from_json(asset.probe["video"])
    fps = planned_fps(video)
    plan = chunk_plan(task.chunk)
    total = Chunk.objects.filter(job_id=task.job_id).aggregate(n=Sum("frame_count"))["n"] or plan.frame_count
    size = metrics.compare_size(display_width=asset.width, display_height=asset.height)
    return _Chunk(
        video=video, fps=fps, plan=plan, size=size, tool=metrics.qc_tool(selectors.qc_binary()).at(size),
        step=metrics.frame_step(
            total_frames=total, max_step=settings.REELFLOW_QC_FRAME_STEP, min_frames=settings.REELFLOW_QC_MIN_FRAMES,
            gop=segment_frames(fps=fps, segment_seconds=task.job.segment_seconds),
        ),
        source_url=s3.presign_get(*source_location(asset), expires=URL_SECONDS, public=False),
        cached=_cached_source(next(iter(units.values())), video, fps, plan) if units else None,
    )  # fmt: skip


def _cached_source(unit: Unit, video: ffmpeg.VideoInfo, fps: Fraction, plan: ChunkPlan) -> str | None:
    """The chunk's source frames as a unit on this machine decoded them, if they are still
    kept (a job's copies go once it is packaged; a unit elsewhere kept none here). Found by the
    units' own key (``steps.units._decoded_entry``), so a changed plan never matches."""
    from pipeline.steps.units import _decoded_entry  # the worker side; the units' key, not a copy of it

    try:
        entry, _ = _decoded_entry(unit, unit.job.asset, video, fps, plan)
        found = decoded_cache.lookup(entry) if entry is not None else None
    except Exception:  # noqa: BLE001 - the cache only ever saves work: decode the source instead
        logger.warning("decoded-chunk cache not readable for the measurement", exc_info=True)
        return None
    return str(found) if found else None


def _measure(tasks: list[QualityTask], units: dict[int, Unit], ctx: _Chunk, workdir: Path) -> dict[int, dict]:
    """One ffmpeg run over ``tasks`` (one chunk, several renditions): their results by task id."""
    keys = [units[t.pk].output_key for t in tasks]
    args = metrics.measure_command(
        distorted_urls=[s3.presign_get(settings.S3_BUCKET_MEDIA, key, expires=URL_SECONDS, public=False) for key in keys],
        source_url=ctx.source_url, cached_source=ctx.cached, chunk=ctx.plan, fps=ctx.fps, source=ctx.video,
        size=ctx.size, tool=ctx.tool, log_dir=workdir, threads=_threads(), step=ctx.step,
    )  # fmt: skip
    run = ffmpeg.run_ffmpeg(args, binary=ctx.tool.binary, total_frames=ctx.plan.frame_count, niceness=NICENESS)
    results = {}
    for i, (task, key) in enumerate(zip(tasks, keys, strict=True)):
        measured = metrics.read_scores(
            tool=ctx.tool, log_dir=workdir, frame_count=ctx.plan.frame_count, step=ctx.step, index=i
        )
        results[task.pk] = {
            "scores": {metric: metrics.summarize(values) for metric, values in measured.values.items()},
            "frame_scores": {
                **{metric: metrics.frames_pack(values) for metric, values in measured.values.items()},
                # Which frames of the chunk the values are of (every step-th).
                "index": metrics.index_pack(measured.indices),
                "step": ctx.step,
            },
            "per_frame": measured.values,
            "indices": measured.indices,
            "frames": measured.frames,
            "step": ctx.step,
            "compared_width": ctx.size[0],
            "compared_height": ctx.size[1],
            "tool": ctx.tool.label,
            "tool_version": ctx.tool.version,
            "command": run.command,
            # One run measured the batch: each task gets its share of ffmpeg's CPU time.
            "cpu_s": run.cpu_s / len(tasks),
            "ffmpeg_s": run.wall_s,
            "batch": [t.rendition.name for t in tasks],
            "batch_cpu_s": run.cpu_s,
            "reference": "cache" if ctx.cached else "source",
            "unit_key": key,
        }
    return results


def _measure_isolating(
    tasks: list[QualityTask], units: dict[int, Unit], ctx: _Chunk
) -> tuple[dict[int, dict], dict[int, ffmpeg.PermanentMediaError]]:
    """Measure the batch; when that fails for good, with the source read again instead of the
    decoded copy, then each rendition on its own, so one bad file fails only its own task.
    Transient errors raise (RQ retries the batch; finished tasks are not measured again)."""
    attempts = [tasks]
    failures: dict[int, ffmpeg.PermanentMediaError] = {}
    results: dict[int, dict] = {}
    while attempts:
        batch = attempts.pop(0)
        try:
            with tempfile.TemporaryDirectory(prefix="reelflow-qc-", dir=_work_dir()) as tmp:
                results.update(_measure(batch, units, ctx, Path(tmp)))
        except ffmpeg.PermanentMediaError as exc:
            if ctx.cached:
                logger.warning("measurement with the decoded chunk %s failed (%s): from the source", ctx.cached, exc.reason)
                ctx.cached = None
                attempts.insert(0, batch)
            elif len(batch) > 1:
                attempts[:0] = [[task] for task in batch]
            else:
                failures[batch[0].pk] = exc
        except OSError as exc:
            raise ffmpeg.TransientMediaError(
                f"worker {socket.gethostname()} could not write its temp files: {exc}"
            ) from exc
    return results, failures


def _artifact_store(task: QualityTask, result: dict) -> None:
    """The chunk's numbers, every scored frame's too, as a lineage artifact next to the job's media."""
    asset = task.job.asset
    key = artifact_key(task)
    body = json.dumps(
        {
            "rendition": task.rendition.name,
            "chunk": task.chunk.index,
            "frames": result["frames"],
            "frame_count": task.chunk.frame_count,
            "step": result["step"],
            "compared": [result["compared_width"], result["compared_height"]],
            "tool": result["tool"],
            "scores": result["scores"],
            "per_frame": {
                "frame": result["indices"],
                **{m: [round(v, 4) for v in values] for m, values in result["per_frame"].items()},
            },
        },
        separators=(",", ":"),
    ).encode()
    s3.client().put_object(
        Bucket=settings.S3_BUCKET_MEDIA, Key=key, Body=body, ContentType="application/json"
    )
    artifact_record(
        job_id=task.job_id, kind=Artifact.Kind.QC, key=key, size=len(body), step=f"measure_quality:{task.pk}",
        inputs={
            "source": {"bucket": asset.source_bucket, "key": asset.source_key, "version": asset.source_version},
            "range": {"start_frame": task.chunk.start_frame, "frame_count": task.chunk.frame_count,
                      "start_s": task.chunk.start_s, "end_s": task.chunk.end_s},
            "rendition": task.rendition.params,
            "unit": result["unit_key"],
            "compared": f"{result['compared_width']}x{result['compared_height']}",
            "sampled": {"step": result["step"], "frames": result["frames"]},
            # "cache": the source frames came from this machine's decoded copy of the chunk.
            "reference": result["reference"],
            "batch": result["batch"],
            "ffmpeg": result["tool_version"],
            "tool": result["tool"],
            "command": result["command"],
            "worker": task.worker,
        },
        parent_keys=[result["unit_key"]],
    )  # fmt: skip


def task_run(*, task_ids: list[int], worker: str = "", rq_id: str = "") -> None:
    """Measure a batch of tasks (one chunk, several renditions). Permanent errors mark the
    tasks they concern FAILED at once; transient ones raise for RQ's retry
    (pipeline.quality.jobs). The encode job is never failed from here."""
    started = time.monotonic()
    tasks = quality_services.tasks_start(
        task_ids=task_ids, worker=worker or f"{socket.gethostname()}:{os.getpid()}", rq_id=rq_id
    )
    if not tasks:
        return
    # A liveness key while it runs: a worker killed mid-measurement is noticed by the
    # reconcile sweep within seconds, not at RQ's next registry cleanup.
    beat = progress.step_heartbeat(rq_id) if rq_id else contextlib.nullcontext()
    with beat:
        units = {
            t.pk: u
            for t in tasks
            for u in Unit.objects.select_related("job__asset").filter(rendition_id=t.rendition_id, chunk_id=t.chunk_id)
        }
        for task in [t for t in tasks if t.pk not in units]:
            quality_services.task_fail(
                task_id=task.pk, reason="the chunk's encode unit no longer exists", permanent=True, rq_id=rq_id
            )
        tasks = [t for t in tasks if t.pk in units]
        if not tasks:
            return
        try:
            ctx = _chunk_context(tasks[0], units)
        except ffmpeg.PermanentMediaError as exc:
            for task in tasks:
                quality_services.task_fail(task_id=task.pk, reason=exc.reason, permanent=True, rq_id=rq_id)
            return
        results, failures = _measure_isolating(tasks, units, ctx)
        for task in tasks:
            if task.pk in failures:
                exc = failures[task.pk]
                logger.warning("quality task %s: %s\n%s", task.pk, exc.reason, exc.stderr_tail)
                # The reason is shown on the quality panel; ffmpeg's own lines stay in log_tail.
                quality_services.task_fail(
                    task_id=task.pk, reason=exc.reason, log_tail=exc.stderr_tail,
                    permanent=True, rq_id=rq_id,
                )  # fmt: skip
                continue
            result = results[task.pk]
            _artifact_store(task, result)
            result["wall_s"] = time.monotonic() - started
            quality_services.task_finish(task_id=task.pk, result=result, rq_id=rq_id)
            logger.info(
                "quality task %s (%s chunk %s, %s of a batch of %s, every %s frames, source from %s): %.0f ms, "
                "ffmpeg %.0f ms, %s",
                task.pk, task.rendition.name, task.chunk.index, result["frames"], len(tasks), result["step"],
                result["reference"], result["wall_s"] * 1000, result["ffmpeg_s"] * 1000,
                {m: round(s["mean"], 2) for m, s in result["scores"].items()},
            )  # fmt: skip
