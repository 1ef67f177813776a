"""Restore drills: prove the backups restore, on a schedule, before anyone needs them.

A drill takes a random sample of the assets whose published package the policy holds, restores
each (everything of the asset, as `restore --asset` does) to a scratch prefix of the media
bucket, where every written object is read back against the ledger's SHA-256, then plays the
restored package: its master playlist is probed with ffprobe, which must decode video frames.
The drill records the time to restore, what played, and deletes the scratch copies.

ffprobe is called here directly (backups depends on core only, not on the pipeline's ffmpeg
wrapper): one command, its exit status and a frame count.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Max
from django.db.models.functions import Left
from django.utils import timezone

from backups import storage
from backups.models import BackupPolicy, DrillState, ObjectVersion, RestoreDrill, RestoreScope, VersionState
from backups.services import restore as restore_service
from backups.services.common import alert_for
from core import s3
from core.models import AlertSeverity
from core.services import event_record

logger = logging.getLogger(__name__)

PUBLISHED = "published/"
MASTER = "master.m3u8"
PROBE_TIMEOUT = 120


class DrillRefused(ValueError):
    pass


def _masters(policy: BackupPolicy):
    return (
        ObjectVersion.objects.filter(source__policy=policy, is_current=True, state=VersionState.PROTECTED)
        .annotate(head=Left("key", len(PUBLISHED))).filter(head=PUBLISHED, key__endswith="/" + MASTER)
    )  # fmt: skip


def drill_candidates(policy: BackupPolicy) -> list[int]:
    """Asset ids whose published package this policy holds a protected copy of."""
    ids = {int(part) for key in _masters(policy).values_list("key", flat=True) if (part := key.split("/")[1]).isdigit()}
    return sorted(ids)


def probe_frames(master: Path) -> int:
    """Video frames ffprobe decodes through the master playlist; raises with ffprobe's words."""
    done = subprocess.run(  # noqa: S603 - fixed arguments, a local path
        [settings.FFPROBE_BINARY, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "json", str(master)],
        capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["ffprobe failed"])[-1][:300])
    streams = json.loads(done.stdout or "{}").get("streams") or [{}]
    return int(streams[0].get("nb_read_frames") or 0)


def _play(*, bucket: str, prefix: str, master_key: str) -> int:
    """Download the restored package beside its master playlist and probe it."""
    client = s3.client()
    folder = master_key.rsplit("/", 1)[0] + "/"
    with tempfile.TemporaryDirectory(prefix="reelflow-drill-") as tmp:
        root = Path(tmp)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + folder):
            for obj in page.get("Contents", []):
                path = root / obj["Key"][len(prefix) :]
                path.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(path))
        return probe_frames(root / master_key)


def _asset_drill(*, policy: BackupPolicy, asset_id: int, scratch: str) -> dict:
    result = {"asset": asset_id, "objects": 0, "bytes": 0, "seconds": 0.0, "master": "", "plays": False, "frames": 0,
              "error": ""}  # fmt: skip
    started = time.monotonic()
    try:
        planned = restore_service.restore_create(
            policy=policy, scope=RestoreScope.ASSET, selector=str(asset_id),
            target_bucket=settings.S3_BUCKET_MEDIA, target_prefix=scratch,
        )
        done = restore_service.restore_execute(restore_id=planned.pk)
    except restore_service.RestoreRejected as exc:
        result["error"] = str(exc)
        return result
    result.update(restore=done.pk, objects=done.objects_done, bytes=done.bytes_restored,
                  seconds=round(time.monotonic() - started, 3))  # fmt: skip
    if done.objects_failed:
        result["error"] = f"{done.objects_failed} object(s) failed to restore or verify (restore #{done.pk})"
        return result
    masters = sorted(
        (i.key for i in done.items.all() if i.key.startswith(f"{PUBLISHED}{asset_id}/") and i.key.endswith("/" + MASTER)),
        key=lambda k: int(k.split("/")[2]) if k.split("/")[2].isdigit() else 0,
    )
    if not masters:
        result["error"] = "no master playlist was restored"
        return result
    result["master"] = masters[-1]
    try:
        result["frames"] = _play(bucket=settings.S3_BUCKET_MEDIA, prefix=scratch, master_key=masters[-1])
        result["plays"] = result["frames"] > 0
        if not result["plays"]:
            result["error"] = "the restored package decodes no video frame"
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        result["error"] = f"the restored package does not play: {exc}"
    return result


def _scratch_clear(prefix: str) -> None:
    place = storage.Place.resolve(target=s3.default_target(), bucket=settings.S3_BUCKET_MEDIA)
    for page in storage.list_pages(place, prefix):
        for obj in page:
            try:
                storage.delete(place, obj["Key"])
            except storage.StorageError as exc:
                logger.warning("drill scratch copy %s left behind: %s", obj["Key"], exc.detail)


def drill_start(*, policy: BackupPolicy, assets: int | None = None, rng: random.Random | None = None) -> RestoreDrill:
    """Record a drill with its sample of assets; DrillRefused when the policy holds no
    published package yet. `drill_execute` carries it out."""
    candidates = drill_candidates(policy)
    if not candidates:
        raise DrillRefused(f"policy {policy.name} holds no published package yet: nothing to drill")
    count = max(1, assets or settings.BACKUP_DRILL_ASSETS)
    sample = sorted((rng or random.Random()).sample(candidates, min(count, len(candidates))))  # noqa: S311 - a sample, not a secret
    return RestoreDrill.objects.create(policy=policy, results=[{"asset": a} for a in sample])


def drill_execute(*, drill_id: int) -> RestoreDrill:
    """Restore, verify and play the drill's sample; idempotent once finished."""
    drill = RestoreDrill.objects.select_related("policy").get(pk=drill_id)
    if drill.finished_at is not None:
        return drill
    policy = drill.policy
    sample = [item["asset"] for item in drill.results]
    scratch = f"drills/{drill.pk}/"
    started = time.monotonic()
    try:
        results = [_asset_drill(policy=policy, asset_id=a, scratch=scratch) for a in sample]
    finally:
        _scratch_clear(scratch)
    failed = [r for r in results if r["error"]]
    drill.results = results
    drill.objects_restored = sum(r["objects"] for r in results)
    drill.bytes_restored = sum(r["bytes"] for r in results)
    drill.seconds = round(time.monotonic() - started, 3)
    drill.state = DrillState.FAILED if failed else DrillState.SUCCEEDED
    drill.error = "; ".join(f"asset {r['asset']}: {r['error']}" for r in failed)[:2000]
    drill.finished_at = timezone.now()
    drill.save()
    event_record(
        type="backup.drill.finished", subject=drill, actor_label="backups",
        payload={"policy": policy.name, "state": drill.state, "assets": sample, "seconds": drill.seconds},
    )
    if failed:
        alert_for(
            policy=policy, severity=AlertSeverity.CRITICAL, title=f"Restore drill of {policy.name} failed",
            detail=drill.error, dedup="drill", subject=drill, evidence={"drill": drill.pk},
        )
    return drill


def drills_due(*, now=None) -> list[BackupPolicy]:
    """Enabled policies holding packages whose last drill is older than BACKUP_DRILL_HOURS."""
    if settings.BACKUP_DRILL_HOURS <= 0:
        return []
    now = now or timezone.now()
    last = dict(RestoreDrill.objects.values("policy").annotate(at=Max("created_at")).values_list("policy", "at"))
    horizon = now - timedelta(hours=settings.BACKUP_DRILL_HOURS)
    return [
        p for p in BackupPolicy.objects.filter(enabled=True)
        if (last.get(p.pk) is None or last[p.pk] <= horizon) and _masters(p).exists()
    ]  # fmt: skip


def drills_due_start(*, now=None) -> list[RestoreDrill]:
    """The scheduler's part: record the due drills and queue them on the backup worker."""
    from backups import jobs

    started = []
    for policy in drills_due(now=now):
        drill = drill_start(policy=policy)
        jobs.drill_enqueue(drill.pk)
        started.append(drill)
    return started
