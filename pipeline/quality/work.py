"""The heavy work of quality measurement, run inside RQ workers (the "quality" queue): measure
one chunk of one video rendition against the same frames of the source with one ffmpeg run,
store the per-frame values as an S3 artifact, and hand the numbers to pipeline.quality.services.

Bytes only move through S3: ffmpeg reads the unit's output and the source through presigned
URLs. State changes are pipeline.quality.services', under its row locks.
"""

import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from django.conf import settings

from core import s3
from pipeline import ffmpeg
from pipeline.media import chunk_plan, planned_fps, video_info_from_json
from pipeline.models import Artifact, QualityTask, Unit
from pipeline.quality import metrics, selectors
from pipeline.quality import services as quality_services
from pipeline.services.common import artifact_record

logger = logging.getLogger(__name__)

URL_SECONDS = 12 * 3600
# Measuring ffmpeg runs at a lower CPU priority: on a machine that also encodes, units and
# packaging get the CPU first and measurements take what is left.
NICENESS = 10


def _work_dir() -> str | None:
    return os.environ.get("REELFLOW_WORK_DIR") or None


def _threads() -> int:
    return settings.REELFLOW_QC_THREADS or os.cpu_count() or 1


def artifact_key(task: QualityTask) -> str:
    return f"{task.job.output_prefix}/quality/{task.rendition.name}/{task.chunk.index:05d}.json"


def _measure(task: QualityTask, workdir: Path) -> dict:
    asset = task.job.asset
    video = video_info_from_json(asset.probe["video"])
    fps = planned_fps(video)
    chunk = chunk_plan(task.chunk)
    unit_key = Unit.objects.values_list("output_key", flat=True).get(
        rendition=task.rendition, chunk=task.chunk
    )
    tool = metrics.qc_tool(selectors.qc_binary())
    size = metrics.compare_size(display_width=asset.width, display_height=asset.height)
    args = metrics.measure_command(
        distorted_url=s3.presign_get(settings.S3_BUCKET_MEDIA, unit_key, expires=URL_SECONDS, public=False),
        source_url=s3.presign_get(asset.source_bucket, asset.source_key, expires=URL_SECONDS, public=False),
        chunk=chunk, fps=fps, source=video, size=size, tool=tool, log_dir=workdir, threads=_threads(),
    )  # fmt: skip
    run = ffmpeg.run_ffmpeg(args, binary=tool.binary, total_frames=chunk.frame_count, niceness=NICENESS)
    measured = metrics.read_scores(tool=tool, log_dir=workdir, expected_frames=chunk.frame_count)
    return {
        "scores": {metric: metrics.summarize(values) for metric, values in measured.values.items()},
        "frame_scores": {
            metric: metrics.frames_pack(values) for metric, values in measured.values.items()
        },
        "per_frame": measured.values,
        "frames": measured.frames,
        "compared_width": size[0],
        "compared_height": size[1],
        "tool": tool.label,
        "tool_version": tool.version,
        "command": run.command,
        "cpu_s": run.cpu_s,
        "ffmpeg_s": run.wall_s,
        "unit_key": unit_key,
    }


def _artifact_store(task: QualityTask, result: dict) -> None:
    """The chunk's numbers, every frame's too, as a lineage artifact next to the job's media."""
    asset = task.job.asset
    key = artifact_key(task)
    body = json.dumps(
        {
            "rendition": task.rendition.name,
            "chunk": task.chunk.index,
            "frames": result["frames"],
            "compared": [result["compared_width"], result["compared_height"]],
            "tool": result["tool"],
            "scores": result["scores"],
            "per_frame": {m: [round(v, 4) for v in values] for m, values in result["per_frame"].items()},
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
            "ffmpeg": result["tool_version"],
            "tool": result["tool"],
            "command": result["command"],
            "worker": task.worker,
        },
        parent_keys=[result["unit_key"]],
    )  # fmt: skip


def task_run(*, task_id: int, worker: str = "", rq_id: str = "") -> None:
    """Measure one task. Permanent errors mark the task FAILED at once; transient ones raise
    for RQ's retry (pipeline.quality.jobs). The encode job is never failed from here."""
    started = time.monotonic()
    task = quality_services.task_start(
        task_id=task_id, worker=worker or f"{socket.gethostname()}:{os.getpid()}", rq_id=rq_id
    )
    if task is None:
        return
    try:
        with tempfile.TemporaryDirectory(prefix="reelflow-qc-", dir=_work_dir()) as tmp:
            result = _measure(task, Path(tmp))
    except ffmpeg.PermanentMediaError as exc:
        logger.warning("quality task %s: %s\n%s", task_id, exc.reason, exc.stderr_tail)
        detail = exc.stderr_tail.strip().splitlines()[-1:] if exc.stderr_tail else []
        quality_services.task_fail(
            task_id=task_id,
            reason=" — ".join([exc.reason, *detail]),
            log_tail=exc.stderr_tail,
            permanent=True,
        )
        return
    except Unit.DoesNotExist:
        quality_services.task_fail(task_id=task_id, reason="the chunk's encode unit no longer exists", permanent=True)
        return
    except OSError as exc:
        raise ffmpeg.TransientMediaError(
            f"worker {socket.gethostname()} could not write its temp files: {exc}"
        ) from exc
    _artifact_store(task, result)
    result["wall_s"] = time.monotonic() - started
    quality_services.task_finish(task_id=task_id, result=result, rq_id=rq_id)
    logger.info(
        "quality task %s (%s chunk %s): %.0f ms, ffmpeg %.0f ms, %s",
        task_id, task.rendition.name, task.chunk.index, result["wall_s"] * 1000, result["ffmpeg_s"] * 1000,
        {m: round(s["mean"], 2) for m, s in result["scores"].items()},
    )  # fmt: skip
