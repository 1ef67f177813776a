"""bench/publish.py's model: the measured job's costs per unit of work, and a simulation of
bigger fleets taking the same work in the media workers' queue order."""

from __future__ import annotations

import heapq
import os
import statistics
import subprocess
from collections import Counter, deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from media_bench import MIB, bench_pipeline, children_cpu


@dataclass
class Costs:
    """What the measured job cost, per unit of work, for the simulation."""

    fps: Fraction
    segment_seconds: int
    src_w: int
    src_h: int
    frame_bytes: int | None
    rungs: list[dict]  # name, codec, width, height, enc (CPU-s / pixel-frame), qc (CPU-s / frame), assemble (s / title-s)
    audio: list[dict]  # name, cpu (CPU-s / title-s), assemble (s / title-s)
    decode: float  # CPU-s per source pixel-frame
    write: float  # CPU-s per source pixel-frame to keep the frames (0: inside the decoding rung's rate)
    fixed_s: float  # per unit and per measurement
    ingest_s: float  # object-created -> first unit started, less the scene analysis
    scene_cpu_per_cut: float | None
    package_s: float
    tail_s: float  # the later of packaged and the last measurement -> published
    qc: bool
    notes: list[str] = field(default_factory=list)


def decode_rate(source: Path) -> float:
    """CPU-s per pixel-frame of decoding the source as a unit does (one thread)."""
    from pipeline import ffmpeg as rf_ffmpeg

    info = rf_ffmpeg.probe(str(source))
    cpu0 = children_cpu()
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "1", "-i", str(source), "-an", "-f", "null", "-"], check=True)
    frames = round(info.video.duration_s * float(info.video.fps)) if info.video.duration_s else None
    frames = frames or round(info.duration * float(info.video.fps))
    return (children_cpu() - cpu0) / (info.video.width * info.video.height * frames)


def measured_costs(result: dict, *, decode: float) -> Costs:
    from django.conf import settings

    from pipeline import decoded_cache
    from pipeline.media import planned_fps, video_info_from_json
    from pipeline.models import Artifact, QualityTask, Rendition, Unit

    job = result["job"]
    video = video_info_from_json(job.asset.probe["video"])
    fps = planned_fps(video)
    title_s = sum(job.chunks.values_list("frame_count", flat=True)) / float(fps)
    src_px = video.width * video.height
    how = {int(a.step.removeprefix("encode_unit:")): a.inputs.get("decoded_from", "source")
           for a in Artifact.objects.filter(job=job, kind=Artifact.Kind.UNIT)}  # fmt: skip
    waits = bench_pipeline().unit_waits(job)
    units = list(Unit.objects.filter(job=job).select_related("rendition", "chunk"))
    tasks = list(QualityTask.objects.filter(job=job).select_related("rendition", "chunk"))
    notes = []

    def pf(unit) -> int:
        return unit.rendition.width * unit.rendition.height * unit.chunk.frame_count

    read_rate: dict[str, float] = {}
    for rendition in {u.rendition.name for u in units if u.chunk_id}:
        readers = [u for u in units if u.chunk_id and u.rendition.name == rendition and how.get(u.pk) == "cache" and u.cpu_s]
        if readers:
            read_rate[rendition] = statistics.median(u.cpu_s / pf(u) for u in readers)
    # Keeping the frames: what a writer spends beyond its rung's reading rate and the decode,
    # where its rung also has readers; else it stays inside the decoding rung's rate.
    extra = [(u.cpu_s - read_rate[u.rendition.name] * pf(u) - decode * src_px * u.chunk.frame_count) / (src_px * u.chunk.frame_count)
             for u in units if u.chunk_id and u.cpu_s and how.get(u.pk) == "source, cached" and u.rendition.name in read_rate]  # fmt: skip
    write = max(0.0, statistics.median(extra)) if extra else 0.0
    if not extra:
        notes.append("keeping decoded frames: no rung both wrote and read them, so the cost is inside the decoding rung's rate")
    rungs = []
    for rendition in Rendition.objects.filter(job=job, kind="video").order_by("height"):
        mine = [u for u in units if u.rendition_id == rendition.pk and u.cpu_s]
        if rendition.name in read_rate:
            enc = read_rate[rendition.name]
        else:  # every unit of this rung decoded: take the decode (and the keeping) off
            enc = statistics.median(
                (u.cpu_s - (decode + (write if how.get(u.pk) == "source, cached" else 0)) * src_px * u.chunk.frame_count) / pf(u)
                for u in mine
            )  # fmt: skip
        qc = [t.cpu_s / t.chunk.frame_count for t in tasks if t.rendition_id == rendition.pk and t.cpu_s]
        assemble = result["steps"]["assemble_s"].get(rendition.name)
        if assemble is None:
            notes.append(f"{rendition.name}: no assemble time in the logs, taken as 0")
        rungs.append({"name": rendition.name, "codec": rendition.params["codec"], "width": rendition.width,
                      "height": rendition.height, "enc": enc, "qc": statistics.median(qc) if qc else 0.0,
                      "assemble": (assemble or 0.0) / title_s})  # fmt: skip
    audio = []
    times = result["times"]
    for rendition in Rendition.objects.filter(job=job, kind="audio").order_by("name"):
        unit = next(u for u in units if u.rendition_id == rendition.pk)
        ready = times.get(f"ready:{rendition.name}")
        assemble = max(0.0, ready - unit.finished_at.timestamp()) if ready and unit.finished_at else 0.0
        audio.append({"name": rendition.name, "cpu": (unit.cpu_s or 0) / title_s, "assemble": assemble / title_s})
    fixed = [(u.wall_s - u.ffmpeg_s - waits.get(u.pk, 0.0)) for u in units if u.wall_s and u.ffmpeg_s]
    scene = (job.chunk_plan or {}).get("scene", {})
    scene_wall = scene.get("wall_s") or 0.0 if scene.get("status") == "analysed" else 0.0
    scanned = scene.get("boundaries_scanned") or 0
    per_cut = (scene.get("cpu_s") or 0) / scanned if scene.get("status") == "analysed" and scanned else None
    if per_cut is None:
        notes.append(f"scene analysis not run in the measured job ({scene.get('reason') or scene.get('status')}): "
                     f"left out of the model (bounded by REELFLOW_SCENE_TIMEOUT_S = {settings.REELFLOW_SCENE_TIMEOUT_S:g} s)")  # fmt: skip
    first_start = min(u.started_at.timestamp() for u in units if u.started_at)
    last_qc = max((t.finished_at.timestamp() for t in tasks if t.finished_at), default=0.0)
    packaged = times.get("job.packaged", times["job.published"])
    frame_size = decoded_cache.frame_bytes(pix_fmt=video.pix_fmt, width=video.width, height=video.height)
    return Costs(
        fps=fps, segment_seconds=job.segment_seconds, src_w=video.width, src_h=video.height,
        frame_bytes=frame_size if settings.REELFLOW_DECODED_CACHE_MB > 0 else None, rungs=rungs, audio=audio,
        decode=decode, write=write, fixed_s=statistics.median(fixed) if fixed else 0.0,
        ingest_s=max(0.0, first_start - times["job.created"] - scene_wall), scene_cpu_per_cut=per_cut,
        package_s=result["steps"]["package_s"] or 0.0, tail_s=max(0.0, times["job.published"] - max(packaged, last_qc)),
        qc=bool(tasks), notes=notes,
    )  # fmt: skip


class Fleet:
    """Workers, one CPU each, ``per_machine`` to a machine, taking a title's work in the media
    workers' queue order (package, assemble, quality, encode), with the decoded-chunk cache per
    machine: :func:`simulate` runs one."""

    def __init__(self, c: Costs, *, title_s: float, workers: int, per_machine: int, budget: int, wait_limit: float):
        from django.conf import settings

        from pipeline import chunking

        self.c, self.title_s, self.workers, self.per_machine = c, title_s, workers, per_machine
        self.budget, self.wait_limit = budget, wait_limit
        window = max(0, settings.REELFLOW_SCENE_WINDOW_SEGMENTS)
        plan = chunking.plan_for_fleet(
            duration_s=title_s, fps=c.fps, segment_seconds=c.segment_seconds,
            max_chunk_seconds=settings.REELFLOW_CHUNK_SECONDS, min_segments=settings.REELFLOW_MIN_CHUNK_SEGMENTS,
            slots=workers, chunks_per_slot=settings.REELFLOW_CHUNKS_PER_SLOT, scene_window=window,
        )  # fmt: skip
        self.chunks = plan.chunks()
        movable = [o for o in chunking.scene_candidates(plan, window=window) if len(o) > 1]
        cores = os.cpu_count() or 1
        self.scene_s = (min(settings.REELFLOW_SCENE_TIMEOUT_S, c.scene_cpu_per_cut * len(movable) / cores)
                        if c.scene_cpu_per_cut and movable else 0.0)  # fmt: skip
        self.shared = c.frame_bytes is not None and budget > 0
        self.info: dict = {}
        self.queue = deque(self._queue_order())
        self.renditions = [("v", i) for i in range(len(c.rungs))] + [("a", i) for i in range(len(c.audio))]
        self.left = {r: (len(self.chunks) if r[0] == "v" else 1) for r in self.renditions}
        self.last_end: dict = {}
        self.in_queue = Counter(chunk.index for kind, _, chunk in self.info.values() if kind == "v")
        self.machines = -(-workers // per_machine)
        self.cache = [dict() for _ in range(self.machines)]  # chunk -> when its frames are complete there
        self.used = [0] * self.machines
        self.assemble_q: list = []  # (available at, rendition)
        self.qc_q: list = []  # (available at, seq, seconds)
        self.seq = 0
        self.ready: dict = {}
        self.package_at = self.package_end = None
        self.qc_end = 0.0
        self.decoded = {"cache": 0, "wrote": 0, "self": 0, "waited_s": 0.0}

    def _queue_order(self) -> list[int]:
        """The units, priced as job_plan prices them, in the order _queue_order gives them: the
        first playable set (the rung nearest REELFLOW_PREVIEW_HEIGHT from below, the audio) ahead."""
        from django.conf import settings

        from pipeline import scheduling
        from pipeline.ladders import AUDIO_COST_PER_S, CODEC_COST

        c = self.c
        heights = sorted((rung["height"], ri) for ri, rung in enumerate(c.rungs))
        low = [ri for height, ri in heights if height <= settings.REELFLOW_PREVIEW_HEIGHT]
        ahead = settings.REELFLOW_PREVIEW_HEIGHT > 0 and bool(heights)
        preview_rung = (low[-1] if low else heights[0][1]) if ahead else None
        work = []
        for ri, rung in enumerate(c.rungs):
            for chunk in self.chunks:
                key = len(self.info)
                self.info[key] = ("v", ri, chunk)
                work.append(scheduling.Work(
                    key=key, cost=rung["width"] * rung["height"] * CODEC_COST.get(rung["codec"], 1.0) * chunk.frame_count,
                    chunk=chunk.index, decode_cost=chunk.frame_count * c.src_w * c.src_h * scheduling.DECODE_SHARE,
                    first=ri == preview_rung))  # fmt: skip
        for ai, _ in enumerate(c.audio):
            key = len(self.info)
            self.info[key] = ("a", ai, None)
            work.append(scheduling.Work(key=key, cost=self.title_s * AUDIO_COST_PER_S, first=ahead))
        return scheduling.queue_order(work, workers=self.workers, shared_decode=self.shared)

    def _assemble(self, t: float) -> float:
        _, r = heapq.heappop(self.assemble_q)
        spec = self.c.rungs[r[1]] if r[0] == "v" else self.c.audio[r[1]]
        end = t + spec["assemble"] * self.title_s
        self.ready[r] = end
        if r[0] == "v" and self.c.qc:
            for chunk in self.chunks:
                self.seq += 1
                heapq.heappush(self.qc_q, (end, self.seq, spec["qc"] * chunk.frame_count + self.c.fixed_s))
        if len(self.ready) == len(self.renditions):
            self.package_at = max(self.ready.values())
        return end

    def _frames(self, t: float, m: int, chunk) -> float:
        """The extra seconds a video unit on machine ``m`` spends on its chunk's frames: none
        from the cache, the wait for a writer, or the decode (and keeping them when room)."""
        c = self.c
        held = self.cache[m].get(chunk.index)
        if held is not None and held <= t:
            self.decoded["cache"] += 1
            return 0.0
        if held is not None and held - t <= self.wait_limit:
            self.decoded["cache"] += 1
            self.decoded["waited_s"] += held - t
            return held - t
        src = c.src_w * c.src_h * chunk.frame_count
        size = (c.frame_bytes or 0) * chunk.frame_count
        if self.shared and held is None and self.used[m] + size <= self.budget:
            self.used[m] += size
            self.decoded["wrote"] += 1
            return (c.decode + c.write) * src
        self.decoded["self"] += 1
        return c.decode * src

    def _encode(self, t: float, m: int) -> float:
        c = self.c
        kind, index, chunk = self.info[self.queue.popleft()]
        if kind == "a":
            seconds = c.audio[index]["cpu"] * self.title_s + c.fixed_s
        else:
            rung = c.rungs[index]
            seconds = rung["enc"] * rung["width"] * rung["height"] * chunk.frame_count + c.fixed_s
            self.in_queue[chunk.index] -= 1
            before = self.decoded["wrote"]
            seconds += self._frames(t, m, chunk)
            if self.decoded["wrote"] > before:
                self.cache[m][chunk.index] = t + seconds
            if self.in_queue[chunk.index] == 0:  # spent: every reader has its frames or its own decode
                for mm in range(self.machines):
                    if self.cache[mm].pop(chunk.index, None) is not None:
                        self.used[mm] -= (c.frame_bytes or 0) * chunk.frame_count
        end = t + seconds
        r = (kind, index)
        self.last_end[r] = max(self.last_end.get(r, 0.0), end)
        self.left[r] -= 1
        if self.left[r] == 0:
            heapq.heappush(self.assemble_q, (self.last_end[r], r))
        return end

    def _next(self, t: float) -> float | None:
        """What the worker free at ``t`` does: the end of its task, or None when it has nothing
        to do now (see :meth:`run`)."""
        if self.package_end is None and self.package_at is not None and self.package_at <= t:
            self.package_end = t + self.c.package_s
            return self.package_end
        if self.assemble_q and self.assemble_q[0][0] <= t:
            return self._assemble(t)
        if self.qc_q and self.qc_q[0][0] <= t:
            _, _, seconds = heapq.heappop(self.qc_q)
            self.qc_end = max(self.qc_end, t + seconds)
            return t + seconds
        if self.queue:
            return self._encode(t, self.machine)
        return None

    def run(self) -> dict:
        start = self.c.ingest_s + self.scene_s
        lanes = [(start, w) for w in range(self.workers)]
        heapq.heapify(lanes)
        busy = 0.0
        while lanes:
            t, w = heapq.heappop(lanes)
            self.machine = w // self.per_machine
            end = self._next(t)
            if end is None:
                future = [x for x in ([self.assemble_q[0][0]] if self.assemble_q else [])
                          + ([self.qc_q[0][0]] if self.qc_q else [])
                          + ([self.package_at] if self.package_at is not None and self.package_end is None else [])
                          if x > t]  # fmt: skip
                if future:
                    heapq.heappush(lanes, (min(future), w))
                continue  # nothing will come for this worker: it retires
            busy += end - t
            heapq.heappush(lanes, (end, w))
        published = max(self.package_end, self.qc_end) + self.c.tail_s
        video_ready = min(v for r, v in self.ready.items() if r[0] == "v")
        audio_ready = min((v for r, v in self.ready.items() if r[0] == "a"), default=video_ready)
        first = max(video_ready, audio_ready)
        return {
            "published_s": published, "first_playable_s": first if first < max(self.ready.values()) else published,
            "chunks": len(self.chunks), "chunk_s": round(self.title_s / len(self.chunks), 1), "units": len(self.info),
            "scene_s": self.scene_s,
            "busy": busy / (self.workers * (published - start)) if published > start else 0.0, **self.decoded,
        }  # fmt: skip


def simulate(c: Costs, *, title_s: float, workers: int, per_machine: int, budget: int, wait_limit: float) -> dict:
    """Object-created -> published (and first playable) for a title of ``title_s`` seconds on
    ``workers`` workers, one CPU each, ``per_machine`` to a machine."""
    return Fleet(c, title_s=title_s, workers=workers, per_machine=per_machine, budget=budget, wait_limit=wait_limit).run()


def _costs_print(costs: Costs, *, budget: int, per_machine: int) -> None:
    print("model inputs (measured in this run, the testsrc2 job):", flush=True)
    for rung in costs.rungs:
        print(f"  {rung['name']}: encode {rung['enc'] * 1e9:.2f} CPU-s / G pixel-frames, QC {rung['qc'] * 1000:.1f} "
              f"CPU-ms / frame, assemble {rung['assemble'] * 1000:.1f} ms / title-s", flush=True)  # fmt: skip
    for spec in costs.audio:
        print(f"  {spec['name']}: {spec['cpu'] * 1000:.1f} CPU-ms / title-s, assemble {spec['assemble'] * 1000:.1f} ms / title-s",
              flush=True)  # fmt: skip
    print(f"  decode {costs.decode * 1e9:.2f}, keeping the frames {costs.write * 1e9:.2f} CPU-s / G source "
          f"pixel-frames; fixed cost {costs.fixed_s * 1000:.0f} ms a unit; ingest {costs.ingest_s:.2f} s; "
          f"package {costs.package_s:.2f} s; publish tail {costs.tail_s:.2f} s; decoded-chunk budget "
          f"{budget / MIB:.0f} MiB a machine; {per_machine} workers a machine", flush=True)  # fmt: skip
    for note in costs.notes:
        print(f"  note: {note}", flush=True)


def _tables_print(model_table: dict, *, args, baseline_per_s: float) -> None:
    print("modelled object-created -> published, s (chunks x length):", flush=True)
    print(f"{'title':>8} | " + " | ".join(f"{w:>3} workers (chunks)" for w in args.fleet)
          + f" | one ffmpeg: CPU-s / {os.cpu_count()} cores", flush=True)  # fmt: skip
    for minutes in args.titles:
        row = model_table[f"{minutes:g}"]
        cells = [f"{row[str(f)]['published_s']:>8.1f} ({row[str(f)]['chunks']}x{row[str(f)]['chunk_s']:g}s)".rjust(20)
                 for f in args.fleet]  # fmt: skip
        print(f"{minutes:>6g} m | " + " | ".join(cells) + f" | {baseline_per_s * minutes * 60:>8.1f}", flush=True)
    print("modelled first playable (object-created -> preview), s; and the video units that read their "
          "frames from the cache / decoded and kept them / decoded without keeping:", flush=True)
    for minutes in args.titles:
        row = model_table[f"{minutes:g}"]
        print(f"{minutes:>6g} m | " + " | ".join(
            f"{row[str(f)]['first_playable_s']:>8.1f} ({'/'.join(str(v) for v in row[str(f)]['frames_from'].values())})".rjust(20)
            for f in args.fleet), flush=True)  # fmt: skip


def model_report(measured: dict, *, decode: float, args, per_machine: int) -> tuple[dict, dict]:
    """Print the model's inputs (from the measured job), its check against that job and its
    tables for args.titles x args.fleet; return (the tables, the check)."""
    from django.conf import settings

    from pipeline import decoded_cache

    costs = measured_costs(measured, decode=decode)
    budget = decoded_cache.budget_bytes()
    wait_limit = settings.REELFLOW_DECODED_CACHE_WAIT_S
    _costs_print(costs, budget=budget, per_machine=per_machine)
    check = simulate(costs, title_s=measured["job"].asset.duration_s, workers=args.workers,
                     per_machine=per_machine, budget=budget, wait_limit=wait_limit)  # fmt: skip
    measured_s = measured["published_s"] - measured["created_s"]
    print(f"model check, the measured job ({args.workers} workers): modelled object-created -> published "
          f"{check['published_s']:.1f} s against {measured_s:.1f} s measured "
          f"(measured x{measured_s / check['published_s']:.2f} the model, whose CPUs are its own; the machine's "
          f"load average went {measured['load'][0]} -> {measured['load'][1]} during the job)", flush=True)  # fmt: skip
    table = {}
    for minutes in args.titles:
        row = {}
        for fleet in args.fleet:
            sim = simulate(costs, title_s=minutes * 60, workers=fleet, per_machine=per_machine, budget=budget,
                           wait_limit=wait_limit)  # fmt: skip
            row[str(fleet)] = {"published_s": round(sim["published_s"], 1),
                               "first_playable_s": round(sim["first_playable_s"], 1),
                               "chunks": sim["chunks"], "chunk_s": sim["chunk_s"], "busy": round(sim["busy"], 2),
                               "frames_from": {"cache": sim["cache"], "decoded_and_kept": sim["wrote"],
                                               "decoded_not_kept": sim["self"]}}  # fmt: skip
        table[f"{minutes:g}"] = row
    # The model's CPUs are its own; so is this reference: one ffmpeg's CPU-seconds over this
    # machine's cores, its best wall time on one idle machine like this one.
    baseline_per_s = measured["baseline_cpu_s"] / measured["job"].asset.duration_s / (os.cpu_count() or 1)
    _tables_print(table, args=args, baseline_per_s=baseline_per_s)
    return table, {"modelled_s": round(check["published_s"], 1), "measured_s": round(measured_s, 1)}
