"""Reads of quality measurements: the contract the publish rules rely on
(:func:`job_quality_state`, :func:`rendition_scores`) and the report the pages draw (the studio
asset page and the console job page): one query for a job not measured, two for one that is,
whatever its size; the per-frame values are left out.
"""

import imageio_ffmpeg
from django.conf import settings
from django.db.models import Count

from pipeline.models import (
    EncodeJob,
    JobQuality,
    QualityState,
    QualityTask,
    QualityTaskState,
    Rendition,
    RenditionKind,
    RenditionQuality,
    RenditionState,
)
from pipeline.quality.metrics import compare_size

MODE_OFF = "off"
METRIC_LABELS = {
    "vmaf": "VMAF",
    "psnr": "PSNR-Y (dB)",
    "ssim": "SSIM-Y",
}

METRIC_NAMES = {
    "vmaf": "VMAF (model vmaf_v0.6.1, 0–100)",
    "psnr": "PSNR of the luma plane, in dB",
    "ssim": "SSIM of the luma plane (0–1)",
}


def qc_enabled() -> bool:
    """Whether renditions that become ready now are measured (``REELFLOW_QC_MODE``)."""
    return settings.REELFLOW_QC_MODE != MODE_OFF


def qc_binary() -> str:
    """The ffmpeg that measures: the setting, else imageio-ffmpeg's build (it has libvmaf)."""
    return settings.REELFLOW_QC_FFMPEG or imageio_ffmpeg.get_ffmpeg_exe()


def job_quality_state(job: EncodeJob) -> str:
    """ "off" (not measured: QC was off when its renditions became ready), "pending" (tasks
    queued or running, or renditions not ready yet), "done", or "failed" (a task failed for
    good). A job with no video rendition ready yet is "pending", or "off" if QC is off now."""
    state = JobQuality.objects.filter(job_id=job.pk).values_list("state", flat=True).first()
    if state is None:
        return QualityState.PENDING.value if qc_enabled() else QualityState.OFF.value
    return QualityState(state).value


def rendition_scores(rendition: Rendition) -> dict:
    """{"vmaf": {"mean": 93.1, "p5": 88.0}, "psnr": {...}, "ssim": {...}}: the whole
    rendition's scores over all its frames, only the metrics measured; {} until measured."""
    row = (
        RenditionQuality.objects.filter(rendition_id=rendition.pk, state=QualityState.DONE)
        .values("scores")
        .first()
    )
    if row is None:
        return {}
    return {metric: {"mean": s["mean"], "p5": s["p5"]} for metric, s in row["scores"].items()}


def job_quality_report(*, job: EncodeJob) -> dict:
    """Everything the quality partial shows: the job's measurement state, one row per video
    rendition (whole-rendition scores and one cell per chunk), the chunks, the metric that
    colours the map (VMAF when every measured chunk has it, else PSNR) and the tools used."""
    renditions = list(
        Rendition.objects.filter(job=job, kind=RenditionKind.VIDEO)
        .order_by("-height", "name")
        # The job's chunks, counted in the same query: chunks are planned for measurement as
        # they are encoded, so the tasks alone may not name them all yet.
        .annotate(job_chunks=Count("job__chunks", distinct=True))
        .values(
            "id",
            "name",
            "width",
            "height",
            "bitrate_kbps",
            "state",
            "quality__state",
            "quality__scores",
            "quality__frames",
            "job__quality__state",
            "job_chunks",
        )
    )
    report = {
        "state": None, "enabled_now": qc_enabled(), "rows": [], "chunks": [], "metric": None, "metric_label": "",
        "metric_name": "", "tools": [], "compared": "", "tasks_total": 0, "tasks_done": 0, "tasks_failed": 0,
        "metric_labels": METRIC_LABELS,
    }  # fmt: skip
    state = renditions[0]["job__quality__state"] if renditions else None
    if state is None:
        # Nothing planned yet (no video rendition ready), or QC is off and nothing ever will be.
        report["state"] = "waiting" if qc_enabled() else QualityState.OFF.value
        return report
    report["state"] = state
    if state == QualityState.OFF:
        return report
    asset = job.asset
    if asset.width and asset.height:
        width, height = compare_size(display_width=asset.width, display_height=asset.height)
        report["compared"] = f"{width}×{height}"
    tasks = list(
        QualityTask.objects.filter(job=job).values(
            "rendition_id", "chunk__index", "chunk__start_s", "chunk__end_s", "state", "scores", "error", "attempts",
            "tool",
        )
    )  # fmt: skip
    # The columns come with the tasks: a chunk is there once one of its units is encoded.
    report["chunks"] = sorted(
        {t["chunk__index"]: {"index": t["chunk__index"], "start_s": t["chunk__start_s"], "end_s": t["chunk__end_s"]}
         for t in tasks}.values(),
        key=lambda c: c["index"],
    )  # fmt: skip
    by_cell = {(t["rendition_id"], t["chunk__index"]): t for t in tasks}
    measured = [t for t in tasks if t["state"] == QualityTaskState.DONE]
    colour = "vmaf" if measured and all("vmaf" in t["scores"] for t in measured) else "psnr"
    report["metric"] = colour if measured else None
    report["metric_label"] = METRIC_LABELS[colour]
    report["metric_name"] = METRIC_NAMES[colour]
    report["tasks_total"] = len(renditions) * max(renditions[0]["job_chunks"], len(report["chunks"]))
    report["tasks_done"] = len(measured)
    report["tasks_failed"] = sum(1 for t in tasks if t["state"] == QualityTaskState.FAILED)
    report["rows"], report["tools"] = _report_rows(renditions, report["chunks"], by_cell)
    return report


def _report_rows(renditions: list[dict], chunks: list[dict], by_cell: dict) -> tuple[list[dict], list[str]]:
    """One row per video rendition (whole-rendition scores and a cell per chunk), and the
    tools that measured them."""
    rows, tools = [], set()
    for r in renditions:
        cells = []
        for chunk in chunks:
            task = by_cell.get((r["id"], chunk["index"]))
            cells.append(
                {
                    "chunk": chunk["index"],
                    "start_s": chunk["start_s"],
                    "end_s": chunk["end_s"],
                    "state": task["state"] if task else "waiting",
                    "scores": task["scores"] if task else {},
                    "error": task["error"] if task else "",
                    "attempts": task["attempts"] if task else 0,
                }
            )
            if task and task["tool"]:
                tools.add(task["tool"])
        rows.append(
            {
                "name": r["name"],
                "width": r["width"],
                "height": r["height"],
                "bitrate_kbps": r["bitrate_kbps"],
                "state": r["quality__state"] or ("waiting" if r["state"] != RenditionState.READY else None),
                "scores": r["quality__scores"] if r["quality__state"] == QualityState.DONE else {},
                "frames": r["quality__frames"],
                "cells": cells,
            }
        )
    return rows, sorted(tools)
