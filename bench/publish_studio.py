"""bench/publish.py's job through the studio: the upload as the page makes it, then the job
watched to its publication, with its milestones, CPU and per-step times."""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import math
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from media_bench import MIB
from publish_cloud import Detection


def workers_ready(workers: list[subprocess.Popen], timeout: float) -> float:
    """Seconds until each worker has registered with RQ and been seen idle (its start-up and
    warm-up done). Not all at once: the control workers run the sweeps as soon as they start."""
    import django_rq
    from rq import Worker

    started = time.monotonic()
    pids = {w.pid for w in workers}
    seen: set[int] = set()
    states: dict[int, str] = {}
    while time.monotonic() - started < timeout:
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a worker exited while starting (see its log)")
        for worker in Worker.all(connection=django_rq.get_connection("default")):
            if worker.pid in pids:
                states[worker.pid] = worker.get_state()
                if states[worker.pid] == "idle":
                    seen.add(worker.pid)
        if seen == pids:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"workers not all seen idle within {timeout:g} s: states by pid {states}, expected {sorted(pids)}")


def upload_studio(*, origin: str, session, path: Path, profile: str, title: str, parallel: int) -> dict:
    """What studio-upload.js does: start (the first part URLs come signed with it), sign the
    rest in batches, PUT the parts to S3 in parallel, complete. Times are time.time()."""
    import requests

    data_head = path.open("rb").read(MIB)
    size = path.stat().st_size
    api = {"X-CSRFToken": session.cookies["csrftoken"], "Content-Type": "application/json"}
    started_at = time.time()
    answer = session.post(f"{origin}/studio/uploads/", headers=api, data=json.dumps({
        "filename": path.name, "size": size, "lastModified": int(path.stat().st_mtime * 1000),
        "fingerprint": hashlib.sha256(data_head).hexdigest(), "contentType": "video/mp4", "title": title,
        "profile": profile, "head": base64.b64encode(data_head[:1024]).decode(),
    }))  # fmt: skip
    answer.raise_for_status()
    upload = answer.json()
    part_size, total = upload["partSize"], upload["partsTotal"]
    urls = {int(n): u for n, u in upload.get("partUrls", {}).items()}
    missing = [n for n in range(1, total + 1) if n not in urls]
    for first in range(0, len(missing), 20):
        signed = session.post(origin + upload["partsUrl"], headers=api, data=json.dumps({"parts": missing[first:first + 20]}))
        signed.raise_for_status()
        urls.update({int(n): u for n, u in signed.json()["urls"].items()})
    local = threading.local()

    def put(number: int) -> None:
        with path.open("rb") as f:
            f.seek((number - 1) * part_size)
            body = f.read(part_size)
        if not hasattr(local, "http"):
            local.http = requests.Session()
        local.http.put(urls[number], data=body, timeout=300).raise_for_status()

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(put, range(1, total + 1)))
    parts_done = time.time()
    done = session.post(origin + upload["completeUrl"], headers=api, data="{}")
    done.raise_for_status()
    return {"started_at": started_at, "parts_done_at": parts_done, "completed_at": time.time(),
            "asset": done.json()["asset"], "bytes": size}  # fmt: skip


def event_times(job) -> dict[str, float]:
    """The job's milestones (time.time()): the first of each event type, and the first
    playable-with-preview."""
    from core.models import Event

    created = Event.objects.filter(type="job.created", subject_id=str(job.pk)).order_by("id").first()
    times: dict[str, float] = {}
    for event in Event.objects.filter(subject_type=created.subject_type, subject_id=str(job.pk)).order_by("id"):
        at = event.created_at.timestamp()
        times.setdefault(event.type, at)
        if event.type == "rendition.playable" and event.payload.get("preview"):
            times.setdefault("preview", at)
        if event.type == "rendition.ready":
            times[f"ready:{event.payload.get('rendition')}"] = at
    return times


def log_lines(logs: list[Path], offsets: list[int]) -> list[str]:
    lines = []
    for path, offset in zip(logs, offsets, strict=True):
        with path.open("rb") as f:
            f.seek(offset)
            lines += f.read().decode(errors="replace").splitlines()
    return lines


def steps_from_logs(lines: list[str], job_id: int) -> dict:
    """Assemble wall time per rendition and the package step's, from the media workers' logs."""
    assembled, package_ms = {}, None
    for line in lines:
        found = re.search(r"assembled (\S+): elapsed at each phase's end (\{.*\})", line)
        if found:
            with contextlib.suppress(ValueError, SyntaxError):
                assembled[found.group(1)] = max(ast.literal_eval(found.group(2)).values()) / 1000
        found = re.search(rf"job {job_id} packaged: ffmpeg (\d+) ms, .* (\d+) ms$", line)
        if found:
            package_ms = int(found.group(1)) + int(found.group(2))
    return {"assemble_s": assembled, "package_s": None if package_ms is None else package_ms / 1000}


def run_job(*, source: Path, label: str, args, origin: str, cookie: tuple[str, str], logs: list[Path],
            detection: Detection | None) -> dict:  # fmt: skip
    import requests
    from django.conf import settings

    from pipeline.models import EncodeJob, JobState, QualityTask, Unit

    session = requests.Session()
    session.cookies.set(*cookie)
    session.get(f"{origin}/studio/upload/", timeout=60).raise_for_status()  # the page sets the CSRF cookie
    offsets = [path.stat().st_size for path in logs]
    load0 = os.getloadavg()[0]
    try:
        up = upload_studio(origin=origin, session=session, path=source, profile=args.profile, title=f"bench {label}",
                           parallel=settings.STUDIO_UPLOAD_PARALLEL_PARTS)  # fmt: skip
        job = EncodeJob.objects.filter(asset_id=up["asset"]).order_by("-pk").first()
        if detection is not None:  # launches from the job's start to its publication
            detection.start()
        t0 = up["started_at"]
        print(f"  [{label}] uploaded {up['bytes'] / MIB:.1f} MiB in {up['completed_at'] - t0:.1f} s "
              f"(parts {up['parts_done_at'] - t0:.1f} s); job {job.pk}", flush=True)  # fmt: skip
        deadline = time.monotonic() + args.timeout
        last_report = time.monotonic()
        seen_preview = False
        ended = (JobState.PUBLISHED, JobState.HELD, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED)
        while True:
            job.refresh_from_db()
            if not seen_preview and job.preview_key:
                seen_preview = True
                print(f"  [{label}] preview written after {time.time() - t0:.1f} s: {job.preview_key}", flush=True)
            if job.state in ended:
                break
            if time.monotonic() - last_report > 15:
                units = Unit.objects.filter(job=job)
                tasks = QualityTask.objects.filter(job=job)
                print(f"  [{label}] {time.time() - t0:.0f} s: {job.state}, units {units.filter(state='done').count()}/"
                      f"{units.count()}, measurements {tasks.filter(state='done').count()}/{tasks.count()}"
                      + (f", launches stopped {sum(1 for x in detection.launches if x.stopped)}/{len(detection.launches)}"
                         if detection else ""), flush=True)  # fmt: skip
                last_report = time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: job {job.pk} not ended after {args.timeout:g} s (state {job.state})")
            time.sleep(0.2)
    finally:
        if detection is not None:
            detection.stop_launching()
    if detection is not None:
        detection.wait_all_stopped(timeout=args.detect_timeout)
    if job.state != JobState.PUBLISHED:
        raise RuntimeError(f"{label}: job {job.pk} ended {job.state}: {job.failure_reason}")
    times = event_times(job)
    units = list(Unit.objects.filter(job=job).select_related("rendition", "chunk"))
    tasks = list(QualityTask.objects.filter(job=job).select_related("rendition", "chunk"))
    unit_cpu = sum(u.cpu_s or 0 for u in units)
    qc_cpu = sum(t.cpu_s or 0 for t in tasks)
    published = times["job.published"] - t0
    preview = times.get("preview")
    first_playable = (preview - t0) if preview is not None and preview < times["job.published"] else published
    starts = [u.started_at.timestamp() for u in units if u.started_at]
    ends = [u.finished_at.timestamp() for u in units if u.finished_at]
    qc_ends = [t.finished_at.timestamp() for t in tasks if t.finished_at]
    steps = steps_from_logs(log_lines(logs, offsets), job.pk)
    marks = {
        "upload done": up["completed_at"] - t0, "job created": times["job.created"] - t0,
        "first unit started": min(starts) - t0, "first playable (preview)": (preview - t0) if preview else None,
        "last unit done": max(ends) - t0, "packaged": times.get("job.packaged", math.nan) - t0,
        "last measurement done": (max(qc_ends) - t0) if qc_ends else None, "published": published,
    }  # fmt: skip
    print(f"  [{label}] timeline (s from upload start): "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(((k, v) for k, v in marks.items() if v is not None),
                                                        key=lambda kv: kv[1])), flush=True)  # fmt: skip
    print(f"  [{label}] chunk plan: {(job.chunk_plan or {}).get('summary', '?')}; {len(units)} units, "
          f"{len(tasks)} measurements; CPU-s units {unit_cpu:.1f}, QC {qc_cpu:.1f}", flush=True)  # fmt: skip
    return {
        "job": job, "t0": t0, "first_playable_s": first_playable, "published_s": published,
        "preview": preview is not None and preview < times["job.published"],
        "upload_s": up["completed_at"] - t0, "created_s": times["job.created"] - t0, "unit_cpu_s": unit_cpu,
        "qc_cpu_s": qc_cpu, "units": len(units), "tasks": len(tasks), "steps": steps, "times": times,
        "load": [round(load0, 1), round(os.getloadavg()[0], 1)], "chunk_plan": (job.chunk_plan or {}).get("summary", ""),
    }  # fmt: skip
