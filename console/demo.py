"""Fake but realistic operations data at scale, for demos, benchmarks and tests: `seed_demo`.

Rows look like the pipeline's own (the shipped ladders, 5-minute chunks, one unit per chunk and
rendition plus audio, commands, speeds, workers, failures with reasons, the event log), and
are written with bulk inserts in batches, inside one transaction per batch. Nothing is encoded
and nothing touches S3 or Redis. Primary keys are allocated up front so that every foreign key
is known before a row is written (no read-back of ids); sequences are reset at the end.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, models, transaction
from django.db.models import Max
from django.utils import timezone

from console.models import QueueSample
from core.models import Event
from core.roles import Role
from core.services import roles_sync
from pipeline.ladders import AUDIO_COST_PER_S, CODEC_COST, ladders_sync
from pipeline.models import (
    Asset,
    AssetState,
    AudioRenditionSpec,
    Chunk,
    EncodeJob,
    JobState,
    Profile,
    Rendition,
    RenditionKind,
    RenditionState,
    Unit,
    UnitState,
    VideoRenditionSpec,
)

CHUNK_SECONDS = 300
SEGMENT_SECONDS = 4
DEMO_PUBLISHER_PREFIX = "demo-"

_WORDS_A = ["Quarterly", "Annual", "Weekly", "Live", "Behind the scenes:", "Inside", "The making of", "Field notes:",
            "Product", "Customer", "Studio", "Morning", "Late night", "Summer", "Winter", "Global"]
_WORDS_B = ["town hall", "keynote", "launch event", "interview", "documentary", "recap", "masterclass", "panel",
            "highlights", "trailer", "workshop", "briefing", "concert", "match replay", "tutorial", "webinar"]
_HOSTS = ["enc-a1", "enc-a2", "enc-b1", "enc-b2", "gpu-c1"]
_UNIT_ERRORS = [
    ("chunk {chunk} encoded to {got} frames instead of {want}, 3 times; the source may be damaged near {at:.1f} s",
     "[h264 @ 0x55d0c8a3c0] error while decoding MB 61 33, bytestream -7\n"
     "[h264 @ 0x55d0c8a3c0] concealing 1410 DC, 1410 AC, 1410 MV errors in P frame\n"
     "frame= {got} fps= 38 q=-1.0 Lsize=   41210kB time=00:04:59.80 bitrate=1125.9kbits/s speed=1.52x"),
    ("gave up after retries: the storage server returned a 5xx error; retry later",
     "[https @ 0x5611a2f0c0] HTTP error 503 Service Unavailable\n"
     "https://s3.internal:8333/reelflow-ingest/uploads/...: Server returned 5XX Server Error reply"),
    ("ffmpeg rejected the command it was given (a bug in the command builder)",
     "[libx264 @ 0x55c2d1a4c0] Error setting preset/tune veryslowest/(null).\n"
     "[libx264 @ 0x55c2d1a4c0] Possible presets: ultrafast superfast veryfast faster fast medium slow slower\n"
     "Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0"),
    ("ffmpeg was killed by SIGKILL (out of memory, or the worker was stopped)",
     "frame= 3120 fps= 11 q=28.0 size=   18432kB time=00:02:04.76 bitrate=1209.9kbits/s speed=0.44x"),
]
_PROBE_ERRORS = [
    "not a media file (unrecognised data)",
    "file is truncated or not a media file (moov atom not found)",
    "no video stream: the file is audio only",
    "zero duration: the file contains no playable media",
]
_STATES_RECENT = [(JobState.ENCODING, 40), (JobState.QUEUED, 8), (JobState.PROBING, 4), (JobState.PACKAGING, 4),
                  (JobState.PUBLISHED, 35), (JobState.FAILED, 6), (JobState.CANCELLED, 3)]
_STATES_OLD = [(JobState.PUBLISHED, 86), (JobState.HELD, 2), (JobState.FAILED, 8), (JobState.CANCELLED, 4)]
# (profile slug, weight, chunk counts): about 40 units per job on average.
_PROFILES = [("standard", 70, (4, 9)), ("fast", 25, (10, 16)), ("full", 5, (1, 1))]
_SOURCES = [((1920, 1080), 70), ((1280, 720), 20), ((3840, 2160), 6), ((854, 480), 4)]


@dataclass
class SeedReport:
    jobs: int = 0
    units: int = 0
    events: int = 0
    publishers: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


@dataclass
class _Ids:
    """The next free primary key of each model, allocated before the rows are built."""

    next: dict = field(default_factory=dict)

    def take(self, model) -> int:
        if model not in self.next:
            self.next[model] = (model.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
        value = self.next[model]
        self.next[model] = value + 1
        return value


def _weighted(rng: random.Random, pairs):
    values, weights = zip(*pairs, strict=True)
    return rng.choices(values, weights=weights)[0]


def _publishers_ensure(count: int, rng: random.Random) -> list:
    """Demo publishers (no usable password) in the Publisher role; created once, then reused."""
    roles_sync()
    user_model = get_user_model()
    existing = list(user_model.objects.filter(username__startswith=DEMO_PUBLISHER_PREFIX).order_by("pk")[:count])
    missing = count - len(existing)
    if missing > 0:
        firsts = ["ana", "ben", "chloe", "dev", "elif", "femi", "gus", "hana", "ivo", "jun", "kai", "lena", "milo",
                  "nora", "omar", "pia", "quin", "ravi", "sara", "tomas", "uma", "vik", "wen", "xia", "yusuf", "zoe"]
        made = []
        for n in range(len(existing), count):
            user = user_model(username=f"{DEMO_PUBLISHER_PREFIX}{firsts[n % len(firsts)]}{n // len(firsts) or ''}",
                              email=f"pub{n}@demo.example")
            user.set_unusable_password()
            made.append(user)
        user_model.objects.bulk_create(made)
        made = list(user_model.objects.filter(username__in=[u.username for u in made]))
        group = Group.objects.get(name=Role.PUBLISHER.value)
        group.user_set.add(*made)
        existing += made
    return existing


def _profiles() -> dict[str, dict]:
    """Each shipped profile with its rungs as the pipeline plans them."""
    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    out = {}
    for profile in Profile.objects.filter(slug__in=[p for p, _, _ in _PROFILES]):
        out[profile.slug] = {
            "profile": profile,
            "video": [s.params() for s in VideoRenditionSpec.objects.filter(profile=profile).order_by("height", "name")],
            "audio": [s.params() for s in AudioRenditionSpec.objects.filter(profile=profile)],
        }
    return out


def _speed_fps(codec: str, width: int, height: int) -> float:
    """Encode speed of a 2-core worker: ~24 fps for x264 1080p, faster for smaller rungs."""
    return 5.0e7 / (width * height) / CODEC_COST.get(codec, 1.0)


def _command(*, unit_pk: int, source_url: str, chunk, params: dict, width: int, height: int, fps: int) -> str:
    seek = max(0.0, chunk["start_s"] - 0.5 / fps)
    gop = SEGMENT_SECONDS * fps
    rate = f"-maxrate {params.get('maxrate_kbps')}k -bufsize {params.get('bufsize_kbps')}k " if params.get("maxrate_kbps") else ""
    return (
        f"ffmpeg -hide_banner -nostdin -y -progress pipe:1 -ss {seek:.6f} -t {chunk['end_s'] - chunk['start_s'] + 2 / fps:.6f} "
        f"-i '{source_url}' -map 0:0 -an -sn -dn -vf 'fps=fps={fps}/1:start_time=0,scale={width}:{height},setsar=1,"
        f"format=yuv420p' -c:v {params['codec']} -preset {params.get('preset') or 'medium'} -crf {params.get('crf')} "
        f"{rate}-g {gop} -keyint_min {gop} -sc_threshold 0 -frames:v {chunk['frame_count']} "
        f"-f mp4 /tmp/reelflow-unit-{unit_pk:x}/unit-{unit_pk}.mp4"
    )


@dataclass(frozen=True)
class _JobPlan:
    """What a planned job's unit and rendition rows are derived from."""

    job_pk: int
    asset_pk: int
    owner: int
    prefix: str
    state: str
    fps: int
    duration: float
    total_frames: int
    source_url: str
    planned_at: datetime
    finished: datetime | None


class _Builder:
    """Builds one batch of jobs with their chunks, renditions, units and events."""

    def __init__(self, *, rng: random.Random, ids: _Ids, profiles: dict, publishers: list, operator, now: datetime):
        self.rng, self.ids, self.profiles, self.publishers, self.operator, self.now = rng, ids, profiles, publishers, operator, now
        self.workers = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(len(_HOSTS) * 2)]
        self.worker_hosts = {w: f"{_HOSTS[i // 2]}:{4100 + i}" for i, w in enumerate(self.workers)}
        self.reset()

    def reset(self) -> None:
        self.assets, self.jobs, self.chunks, self.renditions, self.units = [], [], [], [], []
        self.events: list[tuple] = []

    def event(self, at, type_, subject_type, subject_id, owner_id, payload=None, actor=None, label="system"):
        self.events.append((at, type_, subject_type, str(subject_id), owner_id, payload or {}, actor, label))

    def job(self, created: datetime) -> str:
        rng = self.rng
        recent = self.now - created < timedelta(hours=1)
        state = _weighted(rng, _STATES_RECENT if recent else _STATES_OLD)
        slug = _weighted(rng, [(p, w) for p, w, _ in _PROFILES])
        low, high = next(c for p, _, c in _PROFILES if p == slug)
        ladder = self.profiles[slug]
        n_chunks = rng.randint(low, high)
        fps = rng.choice([24, 25, 25, 30, 30])
        duration = n_chunks * CHUNK_SECONDS - rng.uniform(0, CHUNK_SECONDS - 20)
        (src_w, src_h) = _weighted(rng, _SOURCES)
        publisher = rng.choice(self.publishers)
        asset_pk, job_pk = self.ids.take(Asset), self.ids.take(EncodeJob)
        title = f"{rng.choice(_WORDS_A)} {rng.choice(_WORDS_B)}" + (f" — part {rng.randint(2, 9)}" if rng.random() < 0.3 else "")
        key = f"uploads/{publisher.username}/{rng.getrandbits(32):08x}-{title.lower().replace(' ', '-').replace(':', '')[:40]}.mp4"
        prefix = f"assets/{asset_pk}/jobs/{job_pk}"
        started = created + timedelta(seconds=rng.uniform(1, 60))
        planned_at = started + timedelta(seconds=rng.uniform(2, 12))
        job_wall = timedelta(seconds=duration * rng.uniform(0.25, 1.1))
        if planned_at >= self.now:
            state = JobState.QUEUED
        elif planned_at + job_wall + timedelta(seconds=60) > self.now:
            # A recent job finished as fast as it could have: nothing happens in the future.
            job_wall = (self.now - planned_at) * rng.uniform(0.3, 0.8)
        finished = planned_at + job_wall + (self.now - planned_at - job_wall) * rng.uniform(0.01, 0.1)
        finished = min(finished, planned_at + job_wall + timedelta(seconds=rng.uniform(10, 60)))
        if state in (JobState.ENCODING, JobState.PACKAGING, JobState.QUEUED, JobState.PROBING):
            finished = None
        probe_failed = state == JobState.FAILED and rng.random() < 0.2
        planned = state not in (JobState.QUEUED, JobState.PROBING) and not probe_failed
        owner = publisher.pk

        self.event(created, "asset.created", "pipeline.asset", asset_pk, owner, {"key": key, "size": int(duration * 6e5)})
        self.event(created, "job.created", "pipeline.encodejob", job_pk, owner, {"asset": asset_pk, "profile": slug})
        if state != JobState.QUEUED:
            self.event(started, "job.probing", "pipeline.encodejob", job_pk, owner, {"asset": asset_pk})

        failure, n_units = "", 0
        video_rungs = [p for p in ladder["video"] if p["height"] <= src_h] or ladder["video"][:1]
        if planned:
            n_units, failure = self._plan(job_pk=job_pk, prefix=prefix, state=state, fps=fps, duration=duration, n_chunks=n_chunks,
                                 video_rungs=video_rungs, audio=ladder["audio"], src=(src_w, src_h), planned_at=planned_at,
                                 finished=finished, owner=owner, asset_pk=asset_pk, key=key)
        elif probe_failed:
            failure = rng.choice(_PROBE_ERRORS)
        if state == JobState.FAILED:
            self.event(finished, "job.failed", "pipeline.encodejob", job_pk, owner, {"asset": asset_pk, "reason": failure})
        elif state == JobState.CANCELLED:
            self.event(finished, "job.cancelled", "pipeline.encodejob", job_pk, owner, {"asset": asset_pk},
                       actor=self.operator, label=self.operator.username if self.operator else "operations")
        elif state in (JobState.PUBLISHED, JobState.HELD):
            self.event(finished - timedelta(seconds=20), "job.packaging", "pipeline.encodejob", job_pk, owner, {"asset": asset_pk})
            self.event(finished, "job.published" if state == JobState.PUBLISHED else "job.held", "pipeline.encodejob", job_pk,
                       owner, {"asset": asset_pk, "master": f"{prefix}/package/master.m3u8"})

        done = state in (JobState.PUBLISHED, JobState.HELD)
        self.assets.append(dict(
            id=asset_pk, publisher_id=publisher.pk, title=title, source_bucket="reelflow-ingest", source_key=key,
            source_version="", source_size=int(duration * rng.uniform(2e5, 1.2e6)),
            state=AssetState.READY if done else AssetState.FAILED if state == JobState.FAILED else AssetState.PROCESSING,
            duration_s=None if not planned else round(duration, 3), width=src_w if planned else None,
            height=src_h if planned else None,
            probe={"format": "mov,mp4,m4a,3gp,3g2,mj2", "video": {"codec": "h264", "fps": f"{fps}/1"}} if planned else {},
            poster_key=f"{prefix}/package/poster.jpg" if done else "", created_at=created,
        ))
        self.jobs.append(dict(
            id=job_pk, asset_id=asset_pk, profile_id=ladder["profile"].pk, state=state, chunk_seconds=CHUNK_SECONDS,
            segment_seconds=SEGMENT_SECONDS, priority=rng.choice([1, 2, 3]) if rng.random() < 0.02 else 0,
            failure_reason=failure, output_prefix=prefix,
            master_playlist_key=f"{prefix}/package/master.m3u8" if done else "",
            dash_manifest_key=f"{prefix}/package/manifest.mpd" if done else "",
            created_at=created, started_at=None if state == JobState.QUEUED else started, finished_at=finished,
        ))
        return state

    def _plan(self, *, job_pk, prefix, state, fps, duration, n_chunks, video_rungs, audio, src, planned_at, finished,
              owner, asset_pk, key) -> tuple[int, str]:
        """Chunks, renditions and units of a planned job; returns (units, failure reason)."""
        chunks = self._chunks(job_pk=job_pk, fps=fps, duration=duration, n_chunks=n_chunks)
        source_url = (f"https://s3.internal:8333/reelflow-ingest/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                      f"&X-Amz-Expires=43200&X-Amz-Signature={self.rng.getrandbits(128):032x}")
        plan = _JobPlan(job_pk=job_pk, asset_pk=asset_pk, owner=owner, prefix=prefix, state=state, fps=fps,
                        duration=duration, total_frames=sum(c["frame_count"] for c in chunks), source_url=source_url,
                        planned_at=planned_at, finished=finished)
        rows = []  # (rendition dict, chunk or None)
        for params in video_rungs:
            height = params["height"]
            width = round(src[0] * height / src[1] / 2) * 2
            rows.append(({"kind": RenditionKind.VIDEO, "params": params, "width": width, "height": height}, chunks))
        for params in audio:
            rows.append(({"kind": RenditionKind.AUDIO, "params": params, "width": None, "height": None}, [None]))
        n_units = sum(len(c) for _, c in rows)
        self.event(planned_at, "job.planned", "pipeline.encodejob", job_pk, owner,
                   {"asset": asset_pk, "chunks": n_chunks, "renditions": len(rows), "units": n_units})

        order = [(r, c) for r, cs in rows for c in cs]
        failure = ""
        per_rendition: dict[int, list] = {}  # rendition pk -> [rendition dict, units done, units]
        for (rend, chunk), fate in zip(order, self._unit_fates(state, len(order)), strict=True):
            if "pk" not in rend:
                rend["pk"] = self.ids.take(Rendition)
            counts = per_rendition.setdefault(rend["pk"], [rend, 0, 0])
            unit = self._unit(plan, rend=rend, chunk=chunk, fate=fate)
            if fate == UnitState.DONE:
                counts[1] += 1
            elif fate == UnitState.FAILED:
                failure = f"{rend['params']['name']}: {unit['error']}"
            counts[2] += 1
            self.units.append(unit)
        for rend, done, total in per_rendition.values():
            self._rendition(plan, rend=rend, done=done, total=total)
        return n_units, failure

    def _chunks(self, *, job_pk, fps, duration, n_chunks) -> list[dict]:
        """The job's chunk rows; returns each chunk as the units read it."""
        chunks = []
        for index in range(n_chunks):
            start_s = index * CHUNK_SECONDS
            end_s = min(duration, (index + 1) * CHUNK_SECONDS)
            chunk = {"pk": self.ids.take(Chunk), "index": index, "start_s": float(start_s), "end_s": round(end_s, 3),
                     "start_frame": start_s * fps, "frame_count": round((end_s - start_s) * fps)}
            chunks.append(chunk)
            self.chunks.append(dict(id=chunk["pk"], job_id=job_pk, index=index, start_s=chunk["start_s"],
                                     end_s=chunk["end_s"], start_frame=chunk["start_frame"], frame_count=chunk["frame_count"]))
        return chunks

    def _unit_fates(self, state: str, n: int) -> list[str]:
        """Which units end how, in plan order: by job state."""
        rng = self.rng
        fates = [UnitState.DONE] * n
        if state == JobState.ENCODING:
            progress = rng.uniform(0.05, 0.9)
            running = rng.randint(1, 4)
            done_n = int(n * progress)
            fates = [UnitState.DONE] * done_n + [UnitState.RUNNING] * running + [UnitState.QUEUED] * n
            fates = fates[:n]
        elif state == JobState.FAILED:
            cut = rng.randint(0, n - 1)
            fates = [UnitState.DONE] * cut + [UnitState.FAILED] + [UnitState.CANCELLED] * (n - cut - 1)
            if cut + 1 < n and rng.random() < 0.5:
                fates[cut + 1] = UnitState.DONE  # one was still running and finished
        elif state == JobState.CANCELLED:
            cut = rng.randint(0, n)
            fates = [UnitState.DONE] * cut + [UnitState.CANCELLED] * (n - cut)
        if state == JobState.CANCELLED:
            rng.shuffle(fates)
        return fates

    def _unit(self, plan: _JobPlan, *, rend: dict, chunk: dict | None, fate: str) -> dict:
        """One unit's row: a chunk of a video rendition, or a whole-file audio encode, ended as `fate` says."""
        rng = self.rng
        params = rend["params"]
        unit_pk = self.ids.take(Unit)
        if chunk is not None:
            frames = chunk["frame_count"]
            ffmpeg_s = frames / _speed_fps(params["codec"], rend["width"], rend["height"]) * rng.uniform(0.8, 1.25)
            cost = rend["width"] * rend["height"] * frames * CODEC_COST.get(params["codec"], 1.0)
            output_key = f"{plan.prefix}/units/{params['name']}/{chunk['index']:05d}.mp4"
            command = _command(unit_pk=unit_pk, source_url=plan.source_url, chunk=chunk, params=params,
                               width=rend["width"], height=rend["height"], fps=plan.fps)
        else:
            frames = None
            ffmpeg_s = plan.duration / rng.uniform(150, 400)
            cost = plan.duration * AUDIO_COST_PER_S
            output_key = f"{plan.prefix}/audio/{params['name']}.mp4"
            command = (f"ffmpeg -hide_banner -nostdin -y -progress pipe:1 -i '{plan.source_url}' -map 0:1 -vn -sn -dn "
                       f"-c:a {params['codec']} -b:a {params['bitrate_kbps']}k -ac {params['channels']} "
                       f"-t {plan.total_frames / plan.fps:.6f} -f mp4 /tmp/reelflow-unit-{unit_pk:x}/audio-{unit_pk}.mp4")
        wall_s = ffmpeg_s + rng.uniform(1.5, 6)
        worker = rng.choice(self.workers)
        unit = dict(id=unit_pk, job_id=plan.job_pk, rendition_id=rend["pk"], chunk_id=chunk["pk"] if chunk else None,
                    state=fate, cost=cost, output_key=output_key, rq_id=f"unit-{unit_pk}-{rng.getrandbits(32):08x}")
        end_by = plan.finished or self.now
        if fate == UnitState.DONE:
            window = (end_by - plan.planned_at).total_seconds()
            end = plan.planned_at + timedelta(seconds=wall_s + rng.uniform(0, max(1.0, window - wall_s)))
            end = min(end, end_by - timedelta(seconds=1))
            unit.update(attempts=1 if rng.random() > 0.03 else 2, worker=worker, finished_at=end,
                        started_at=end - timedelta(seconds=wall_s), wall_s=round(wall_s, 3),
                        ffmpeg_s=round(ffmpeg_s, 3), cpu_s=round(ffmpeg_s * rng.uniform(1.6, 1.95), 3),
                        frames=frames, command=command)
        elif fate == UnitState.RUNNING:
            unit.update(attempts=1, worker=worker,
                        started_at=self.now - timedelta(seconds=rng.uniform(1, min(wall_s, 120))))
        elif fate == UnitState.FAILED:
            reason, tail = rng.choice(_UNIT_ERRORS)
            want = frames or 0
            at = chunk["start_s"] + 200 if chunk else 0.0
            unit.update(error=reason.format(chunk=chunk["index"] if chunk else 0, got=max(0, want - 4), want=want, at=at),
                        log_tail=tail.format(got=max(0, want - 4)), attempts=3 if "retries" in reason else 1,
                        worker=worker, started_at=end_by - timedelta(seconds=wall_s),
                        finished_at=plan.finished, command=command)
        return unit

    def _rendition(self, plan: _JobPlan, *, rend: dict, done: int, total: int) -> None:
        """The rendition's row (READY once all its units are done) and, if it is ready, its event."""
        params = rend["params"]
        if done == total and plan.state not in (JobState.CANCELLED,):
            rstate = RenditionState.READY
        elif plan.state == JobState.CANCELLED:
            rstate = RenditionState.READY if done == total else RenditionState.CANCELLED
        else:
            rstate = RenditionState.ENCODING
        ready = rstate == RenditionState.READY
        video = rend["kind"] == RenditionKind.VIDEO
        kbps = params.get("maxrate_kbps") or params.get("bitrate_kbps") or 128
        prefix, total_frames = plan.prefix, plan.total_frames
        self.renditions.append(dict(
            id=rend["pk"], job_id=plan.job_pk, kind=rend["kind"], name=params["name"], params=params,
            width=rend["width"], height=rend["height"], state=rstate, units_total=total, units_done=done,
            output_key=(f"{prefix}/renditions/{params['name']}.mp4" if video else f"{prefix}/audio/{params['name']}.mp4")
            if ready else "",
            frame_count=total_frames if ready and video else None,
            duration_s=round(total_frames / plan.fps, 3) if ready else None,
            bitrate_kbps=round(kbps * self.rng.uniform(0.55, 0.9)) if ready else None,
            codecs=("avc1.64001f" if params.get("codec") == "libx264" else params.get("codec", "")) if ready else "",
        ))
        if ready and plan.finished is not None:
            self.event(plan.finished - timedelta(seconds=self.rng.uniform(25, 90)), "rendition.ready",
                       "pipeline.encodejob", plan.job_pk, plan.owner, {"asset": plan.asset_pk, "rendition": params["name"]})

    def write(self) -> None:
        rows_insert(Asset, self.assets)
        rows_insert(EncodeJob, self.jobs)
        rows_insert(Chunk, self.chunks)
        rows_insert(Rendition, self.renditions)
        rows_insert(Unit, self.units)


def rows_insert(model, rows: list[dict], *, chunk: int = 5000) -> None:
    """INSERT plain dicts (keyed by attname) with executemany: the ORM's bulk_create spends
    most of its time preparing each value, which would make 10,000 jobs take minutes. Values
    are converted per column type the way the ORM would (datetimes, JSON); missing columns
    get the field's default; the primary key is left to the database when rows omit it."""
    if not rows:
        return
    # The primary key is written when the rows carry it, else the database assigns it.
    fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.attname in rows[0]]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # Table and column names come from the model's metadata, never from input.
    sql = f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    defaults = {f.attname: f.get_default() for f in fields}
    converters = []
    for f in fields:
        if isinstance(f, models.DateTimeField):
            converters.append(_datetime_adapter())
        elif isinstance(f, models.JSONField):
            converters.append(lambda value, f=f: f.get_db_prep_save(value, connection))
        else:
            converters.append(None)
    names = [f.attname for f in fields]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            values = []
            for row in rows[start : start + chunk]:
                record = []
                for name, convert in zip(names, converters, strict=True):
                    value = row[name] if name in row else defaults[name]
                    record.append(convert(value) if convert is not None and value is not None else value)
                values.append(record)
            cursor.executemany(sql, values)


def _queue_samples(*, rng: random.Random, now: datetime, hours: int) -> list[dict]:
    """One sample a minute per queue over the last hours: a busy encode queue, the others calm."""
    rows = []
    start = now.replace(second=0, microsecond=0) - timedelta(hours=hours)
    for minute in range(hours * 60):
        at = start + timedelta(minutes=minute)
        wave = (math.sin(minute / 47) + 1) / 2
        depths = {
            "encode": int(40 + 260 * wave + rng.uniform(0, 40)),
            "assemble": int(rng.uniform(0, 6) * wave),
            "ingest": int(rng.uniform(0, 3)),
            "backup": int(rng.uniform(0, 20) if minute % 60 < 10 else 0),
            "security": 0,
            "default": int(rng.uniform(0, 2)),
        }
        for queue, queued in depths.items():
            started = min(queued, 10 if queue == "encode" else 1)
            rows.append({"at": at, "queue": queue, "queued": queued, "started": started, "failed": rng.randint(0, 3)})
    return rows


def demo_data_seed(
    *, jobs: int, publishers: int = 40, days: int = 30, seed: int = 1, batch_jobs: int = 250,
    sample_hours: int = 24, progress=None,
) -> SeedReport:
    """Write `jobs` encode jobs (about 40 units each) spread over the last `days`, with events,
    and `sample_hours` of queue-depth samples. Repeatable for a given `seed`."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    now = timezone.now()
    report = SeedReport()
    pubs = _publishers_ensure(publishers, rng)
    report.publishers = len(pubs)
    profiles = _profiles()
    operator = get_user_model().objects.filter(username="operations").first()
    ids = _Ids()
    # Newer jobs are denser (the charts' last hours have work in them); ids follow time.
    ages = sorted(
        (rng.uniform(0, 6 * 3600) if rng.random() < 0.1 else rng.uniform(0, days * 86400) for _ in range(jobs)),
        reverse=True,
    )
    builder = _Builder(rng=rng, ids=ids, profiles=profiles, publishers=pubs, operator=operator, now=now)
    events: list[tuple] = []
    for start in range(0, jobs, batch_jobs):
        builder.reset()
        for age in ages[start : start + batch_jobs]:
            state = builder.job(now - timedelta(seconds=age))
            report.by_state[state] = report.by_state.get(state, 0) + 1
        with transaction.atomic():
            builder.write()
        report.jobs += len(builder.jobs)
        report.units += len(builder.units)
        events += builder.events
        if progress:
            progress(report)
    events.sort(key=lambda e: e[0])
    with transaction.atomic():
        first = ids.take(Event)
        rows_insert(Event, [
            dict(id=first + n, created_at=at, type=t, subject_type=st, subject_id=sid, owner_id=owner, payload=payload,
                 actor_id=actor.pk if actor else None, actor_label=label)
            for n, (at, t, st, sid, owner, payload, actor, label) in enumerate(events)
        ])
        QueueSample.objects.filter(at__gte=now - timedelta(hours=sample_hours)).delete()
        rows_insert(QueueSample, _queue_samples(rng=rng, now=now, hours=sample_hours))
    report.events = len(events)
    _sequences_reset([Asset, EncodeJob, Chunk, Rendition, Unit, Event])
    return report


def _datetime_adapter():
    """What the backend stores for an aware datetime. SQLite gets Django's text form (naive
    UTC), written here directly: the generic adapter costs more than the insert itself."""
    if connection.vendor == "sqlite":
        return lambda value: str(value.astimezone(UTC).replace(tzinfo=None))
    return connection.ops.adapt_datetimefield_value


def _sequences_reset(models: list) -> None:
    """Explicit primary keys leave PostgreSQL's sequences behind; SQLite needs nothing."""
    from django.core.management.color import no_style

    statements = connection.ops.sequence_reset_sql(no_style(), models)
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
