"""`manage.py encode PATH_OR_S3_URI --profile fast --wait`: put a file through the pipeline.

The file is uploaded to the ingest prefix (or copied there from another S3 location), so it
goes through the same object-created path as any upload; the command then follows the job
with one progress bar per rendition until it ends.
"""

import asyncio
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core import s3
from pipeline import events, progress
from pipeline.models import JOB_FINAL_STATES, EncodeJob, IngestEvent, JobState, Profile
from pipeline.selectors import job_snapshot

# Waiting ends at a final state, or when the job needs a person (held for review).
WAIT_ENDS = JOB_FINAL_STATES | {JobState.HELD}

BAR_WIDTH = 30


def _bar(fraction: float) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH)
    return "█" * filled + "·" * (BAR_WIDTH - filled)


class ProgressBoard:
    """Per-rendition progress from a snapshot plus live unit percentages."""

    def __init__(self, snapshot: dict) -> None:
        self.reset(snapshot)

    def reset(self, snapshot: dict) -> None:
        self.snapshot = snapshot
        self.unit_percent: dict[int, float] = {}
        self.unit_state = {u["id"]: u["state"] for u in snapshot["units"]}
        self.unit_rendition = {u["id"]: u["rendition"] for u in snapshot["units"]}
        self.fps: dict[int, float] = {}

    def apply(self, message: dict) -> None:
        if message.get("seq", 0) <= self.snapshot["seq"]:
            return
        unit = message.get("unit")
        if message.get("kind") == "progress" and unit is not None:
            self.unit_percent[unit] = message.get("percent") or 0.0
            self.fps[message.get("rendition_id")] = message.get("fps") or 0.0
        elif message.get("kind") == "unit" and unit is not None:
            self.unit_state[unit] = message["state"]
        elif message.get("kind") == "job":
            self.snapshot["job"]["state"] = message["state"]
            self.snapshot["job"]["reason"] = message.get("reason", "")

    def lines(self) -> list[str]:
        out = []
        for rendition in self.snapshot["renditions"]:
            units = [u for u, r in self.unit_rendition.items() if r == rendition["id"]]
            if not units:
                continue
            done = sum(
                1.0 if self.unit_state.get(u) == "done" else self.unit_percent.get(u, 0.0) / 100 for u in units
            )
            fraction = done / len(units)
            fps = self.fps.get(rendition["id"])
            extra = f" {fps:5.0f} fps" if fps and fraction < 1 else ""
            out.append(f"  {rendition['name']:<16} {_bar(fraction)} {fraction * 100:5.1f}%{extra}")
        return out


class Command(BaseCommand):
    help = "Upload a local file (or copy an s3:// object) to the ingest prefix and follow its encode."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", help="a local path or s3://bucket/key")
        parser.add_argument("--profile", default=settings.REELFLOW_DEFAULT_PROFILE)
        parser.add_argument("--publisher", default="publisher", help="username of the owning publisher")
        parser.add_argument("--title", default="")
        parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
        parser.add_argument("--timeout", type=float, default=6 * 3600)

    def handle(self, *args, source: str, profile: str, publisher: str, title: str, wait: bool, timeout: float, **options):
        user = get_user_model().objects.filter(username=publisher).first()
        if user is None or not user.has_perm("core.access_studio"):
            raise CommandError(f"no publisher named {publisher!r}: pass --publisher USERNAME")
        if not Profile.objects.filter(slug=profile, is_active=True).exists():
            names = ", ".join(Profile.objects.filter(is_active=True).values_list("slug", flat=True))
            raise CommandError(f"unknown profile {profile!r}; choose one of: {names}")
        key = self._put(source, user.username, profile=profile, title=title)
        self.stdout.write(f"uploaded to s3://{settings.S3_BUCKET_INGEST}/{key}")
        job = self._job_for(key)
        self.stdout.write(f"job {job.pk} for asset {job.asset_id} ({job.profile.slug})")
        if not wait:
            return
        final = asyncio.run(self._follow(job.pk, timeout))
        if final["state"] == JobState.HELD:
            raise CommandError(
                f"job {job.pk} is held for review: {final['reason'] or 'a publish rule failed'}\n"
                f"  operations staff decide at {settings.SITE_URL}/ops/jobs/{job.pk}/ or with "
                f"`manage.py job approve|reject {job.pk} --as USER --reason TEXT`"
            )
        if final["state"] != JobState.PUBLISHED:
            raise CommandError(f"job {job.pk} {final['state']}: {final['reason'] or 'no reason recorded'}")
        job.refresh_from_db()
        self.stdout.write(self.style.SUCCESS(f"published in {self._elapsed(job)}"))
        self.stdout.write(f"master playlist: {settings.SITE_URL}/studio/assets/{job.asset_id}/hls/master.m3u8")
        self.stdout.write(f"  (S3: s3://{settings.S3_BUCKET_MEDIA}/{job.master_playlist_key})")
        self._print_playback(job)

    def _print_playback(self, job: EncodeJob) -> None:
        """The URLs anyone can open (no cookie). A command is an entry point like a page, so it
        may reach delivery; the pipeline's modules themselves never do."""
        from delivery.services import playback_urls

        urls = playback_urls(asset=job.asset, job=job)
        if urls["hls"] is None:
            self.stdout.write(f"playback: none (the asset's playback policy is {urls['policy']})")
            return
        self.stdout.write(f"playback HLS: {urls['hls']}")
        if urls["dash"]:
            self.stdout.write(f"playback DASH: {urls['dash']}")
        if urls["expires_at"]:
            self.stdout.write(f"  (signed links, valid until {urls['expires_at']})")

    def _put(self, source: str, username: str, *, profile: str, title: str) -> str:
        name = source.rsplit("/", 1)[-1]
        key = f"{events.UPLOAD_PREFIX}{username}/{uuid.uuid4().hex[:8]}-{name}"
        metadata = {"profile": profile, "title": urllib.parse.quote(title or Path(name).stem)}
        client = s3.client()
        if source.startswith("s3://"):
            bucket, _, src_key = source[5:].partition("/")
            if not bucket or not src_key:
                raise CommandError("an S3 source looks like s3://bucket/key")
            client.copy_object(
                Bucket=settings.S3_BUCKET_INGEST, Key=key, CopySource={"Bucket": bucket, "Key": src_key},
                Metadata=metadata, MetadataDirective="REPLACE",
            )
            return key
        path = Path(source)
        if not path.is_file():
            raise CommandError(f"{source}: no such file")
        size = path.stat().st_size
        if size == 0:
            raise CommandError(f"{source}: the file is empty")
        if size > settings.REELFLOW_MAX_UPLOAD_BYTES:
            raise CommandError(f"{source}: {size} bytes is over the {settings.REELFLOW_MAX_UPLOAD_BYTES} byte limit")
        client.upload_file(str(path), settings.S3_BUCKET_INGEST, key, ExtraArgs={"Metadata": metadata})
        return key

    def _job_for(self, key: str, announce_after: float = 5.0) -> EncodeJob:
        """The job the object-created event started. If no event arrives (no webhook in
        this setup), announce the object ourselves: deduplication keeps it to one job."""
        deadline = time.monotonic() + announce_after
        while True:
            event = IngestEvent.objects.filter(key=key).select_related("job").first()
            if event is not None:
                if event.job is None:
                    raise CommandError(f"the upload was refused: {event.outcome}")
                return event.job
            if time.monotonic() > deadline:
                try:
                    events.object_created_receive(
                        created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key),
                        source=IngestEvent.Source.CLI,
                    )
                except events.EventRejected as exc:
                    raise CommandError(f"the upload was refused: {exc}") from exc
                deadline = float("inf")
            time.sleep(0.2)

    async def _follow(self, job_id: int, timeout: float) -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(progress.job_group(job_id), channel)
        board = ProgressBoard(await sync_to_async(job_snapshot)(job_id=job_id))
        drawn = 0
        deadline = time.monotonic() + timeout
        last_refresh = time.monotonic()
        try:
            while board.snapshot["job"]["state"] not in WAIT_ENDS:
                if time.monotonic() > deadline:
                    raise CommandError(f"gave up waiting after {timeout:g} s; the job goes on")
                try:
                    board.apply(await asyncio.wait_for(layer.receive(channel), timeout=1.0))
                except TimeoutError:
                    pass
                # Units and renditions appear after planning: refresh the snapshot now and then.
                if time.monotonic() - last_refresh > 3 or not board.snapshot["renditions"]:
                    board.reset(await sync_to_async(job_snapshot)(job_id=job_id))
                    last_refresh = time.monotonic()
                drawn = self._draw(board, drawn)
        finally:
            await layer.group_discard(progress.job_group(job_id), channel)
        board.reset(await sync_to_async(job_snapshot)(job_id=job_id))
        self._draw(board, drawn, final=True)
        return board.snapshot["job"]

    def _draw(self, board: ProgressBoard, previous_lines: int, *, final: bool = False) -> int:
        """Redraw the board in place on a terminal. Anywhere else (a pipe, a log, CI) nothing
        can be redrawn: the board is printed once, when the job has ended."""
        lines = [f"job {board.snapshot['job']['id']}: {board.snapshot['job']['state']}", *board.lines()]
        if not sys.stdout.isatty():
            if final:
                self.stdout.write("\n".join(lines))
            return 0
        if previous_lines:
            self.stdout.write(f"\x1b[{previous_lines}F\x1b[J", ending="")
        self.stdout.write("\n".join(lines))
        return len(lines)

    @staticmethod
    def _elapsed(job: EncodeJob) -> str:
        if job.finished_at and job.created_at:
            return f"{(job.finished_at - job.created_at).total_seconds():.1f} s"
        return "?"
