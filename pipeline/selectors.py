"""Reads of pipeline data shaped for the pages and sockets that show them."""

from dataclasses import dataclass

import django_rq
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from core.models import Event
from core.s3 import redact_presigned
from pipeline import progress
from pipeline.models import Artifact, Asset, EncodeJob, IngestEvent, JobState, Rendition, Unit, UnitState


def assets_for_publisher(*, publisher, state: str | None = None, search: str = "") -> QuerySet[Asset]:
    qs = Asset.objects.filter(publisher=publisher)
    if state:
        qs = qs.filter(state=state)
    if search:
        qs = qs.filter(title__icontains=search)
    return qs.order_by("-created_at", "-id")


def asset_visible_to(*, asset_id: int, user) -> Asset | None:
    """The asset if `user` may see it: its publisher, or operations staff. Else None."""
    qs = Asset.objects.select_related("publisher").filter(pk=asset_id)
    if not user.has_perm("core.access_operations"):
        qs = qs.filter(publisher=user)
    return qs.first()


def job_latest(*, asset: Asset) -> EncodeJob | None:
    return asset.jobs.select_related("profile").order_by("-created_at", "-id").first()


def job_snapshot(*, job_id: int) -> dict:
    """Everything a live grid needs, in one dict: job state, renditions (rows), chunks
    (columns), every unit's state, and the sequence number the snapshot is current to.

    The sequence number is read before the rows, so a message with seq <= snapshot["seq"] is
    already reflected (or superseded) here and a client may drop it.
    """
    seq = progress.current_seq(job_id)
    job = EncodeJob.objects.select_related("asset", "profile").get(pk=job_id)
    renditions = list(
        Rendition.objects.filter(job=job).order_by("kind", "-height", "name").values(
            "id", "name", "kind", "width", "height", "state", "units_total", "units_done", "bitrate_kbps"
        )
    )
    chunks = list(job.chunks.order_by("index").values("index", "start_s", "end_s", "frame_count"))
    units = list(
        Unit.objects.filter(job=job).values(
            "id", "rendition_id", "chunk__index", "state", "attempts", "wall_s", "frames", "error"
        )
    )
    return {
        "seq": seq,
        "job": {
            "id": job.pk,
            "state": job.state,
            "reason": job.failure_reason,
            "profile": job.profile.slug,
            "created_at": job.created_at.isoformat(),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "asset": job.asset_id,
            "duration_s": job.asset.duration_s,
        },
        "renditions": renditions,
        "chunks": chunks,
        "units": [
            {
                "id": u["id"],
                "rendition": u["rendition_id"],
                "chunk": u["chunk__index"],
                "state": u["state"],
                "attempts": u["attempts"],
                "wall_s": u["wall_s"],
                "frames": u["frames"],
                "error": u["error"],
            }
            for u in units
        ],
    }


def job_restart_note(*, job_id: int) -> str:
    """What the job's last restart did besides re-running steps, for the CLI and the console:
    "; quality measured again for h264-240p, h264-360p", or ""."""
    event = (
        Event.objects.filter(type="job.restarted", subject_type="pipeline.encodejob", subject_id=str(job_id))
        .order_by("-id")
        .first()
    )
    remeasured = (event.payload.get("remeasured") if event else None) or []
    return f"; quality measured again for {', '.join(remeasured)}" if remeasured else ""


def job_unit_counts(*, job_id: int) -> dict[str, int]:
    return Unit.objects.filter(job_id=job_id).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(state=UnitState.DONE)),
        running=Count("id", filter=Q(state=UnitState.RUNNING)),
        failed=Count("id", filter=Q(state=UnitState.FAILED)),
    )


# --- Reads for the studio's pages (studio -> pipeline) ---------------------------------------


def assets_listing(*, publisher, state: str | None = None, search: str = "") -> QuerySet[Asset]:
    """The publisher's assets with their latest job's id, state, reason and profile name
    annotated, so a page of the list costs one query whatever its length."""
    latest = EncodeJob.objects.filter(asset=OuterRef("pk")).order_by("-created_at", "-id")
    return assets_for_publisher(publisher=publisher, state=state, search=search).annotate(
        job_id=Subquery(latest.values("id")[:1]),
        job_state=Subquery(latest.values("state")[:1]),
        job_reason=Subquery(latest.values("failure_reason")[:1]),
        profile_name=Subquery(latest.values("profile__name")[:1]),
    )


def job_published_latest(*, asset: Asset) -> EncodeJob | None:
    """The newest job whose package can be played, if any."""
    return (
        asset.jobs.filter(state=JobState.PUBLISHED)
        .exclude(master_playlist_key="")
        .order_by("-created_at", "-id")
        .first()
    )


def job_renditions(*, job_id: int) -> QuerySet[Rendition]:
    return Rendition.objects.filter(job_id=job_id).order_by("kind", "-height", "name")


def job_for_object(*, bucket: str, key: str) -> EncodeJob | None:
    """The job an announcement of this object started (whichever source announced it first)."""
    event = (
        IngestEvent.objects.filter(bucket=bucket, key=key, job__isnull=False)
        .select_related("job__asset")
        .order_by("-id")
        .first()
    )
    return event.job if event else None


# --- Reads for the operations console (console -> pipeline) ----------------------------------


def ingest_rejections(*, limit: int = 8) -> list[IngestEvent]:
    """Objects in the ingest bucket that started no job and never will (outside
    uploads/<publisher>/, an unknown publisher), newest first: for operations staff."""
    return list(IngestEvent.objects.filter(job__isnull=True, outcome__startswith="rejected")[:limit])


def job_seqs(*, job_ids: list[int], conn=None) -> dict[int, int]:
    """Each job's current progress sequence number, in one Redis round trip: a page listing
    many jobs is current to these, and drops "jobs" group messages at or below them."""
    if not job_ids:
        return {}
    conn = conn or django_rq.get_connection("default")
    values = conn.mget([progress._seq_key(job_id) for job_id in job_ids])
    return {job_id: int(value or 0) for job_id, value in zip(job_ids, values, strict=True)}


# --- Lineage ---------------------------------------------------------------------------------

LINEAGE_MAX_PER_COLUMN = 24
def redact_signed_urls(text: str) -> str:
    """A command as recorded, with the signature of every presigned URL left out (commands
    are stored redacted; this also covers rows written before that)."""
    return redact_presigned(text)


def job_artifacts(*, job_id: int) -> list[Artifact]:
    return list(Artifact.objects.filter(job_id=job_id).order_by("kind", "key"))


@dataclass
class LineageNode:
    id: str
    kind: str
    label: str
    detail: str
    depth: int
    artifact: Artifact | None = None
    hidden: int = 0  # a "+N more" node stands for this many artifacts
    x: float = 0
    y: float = 0


@dataclass
class LineageGraph:
    nodes: list[LineageNode]
    edges: list[tuple[LineageNode, LineageNode]]
    width: int
    height: int
    focus: LineageNode


def _node_for(artifact: Artifact, depth: int) -> LineageNode:
    name = artifact.key.rsplit("/", 2)
    label = "/".join(name[-2:]) if artifact.kind == Artifact.Kind.UNIT else name[-1]
    return LineageNode(id=f"a{artifact.pk}", kind=artifact.kind, label=label, detail=artifact.step, depth=depth,
                       artifact=artifact)


def artifact_lineage(*, artifact: Artifact, max_depth: int = 4) -> LineageGraph:
    """The artifact with what it was made from (to the left, back to the source object) and
    what was made from it (to the right), laid out in columns by distance. A column with
    more than LINEAGE_MAX_PER_COLUMN artifacts shows the first ones and a "+N more" node."""
    focus = _node_for(artifact, 0)
    nodes: dict[str, LineageNode] = {focus.id: focus}
    edges: list[tuple[str, str]] = []
    for direction in (-1, 1):
        frontier = [artifact]
        for step in range(1, max_depth + 1):
            related = Artifact.objects.filter(
                **({"children__in": frontier} if direction < 0 else {"parents__in": frontier})
            ).distinct().order_by("kind", "key")
            batch = list(related[: LINEAGE_MAX_PER_COLUMN + 1])
            if not batch:
                break
            shown = batch[:LINEAGE_MAX_PER_COLUMN]
            ids = {a.pk for a in frontier}
            through = Artifact.parents.through.objects.filter(
                **({"from_artifact_id__in": ids, "to_artifact_id__in": [a.pk for a in shown]} if direction < 0
                   else {"to_artifact_id__in": ids, "from_artifact_id__in": [a.pk for a in shown]})
            ).values_list("from_artifact_id", "to_artifact_id")
            for a in shown:
                nodes.setdefault(f"a{a.pk}", _node_for(a, direction * step))
            for child, parent in through:
                if f"a{child}" in nodes and f"a{parent}" in nodes:
                    edges.append((f"a{parent}", f"a{child}"))
            if len(batch) > LINEAGE_MAX_PER_COLUMN:
                total = related.count()
                more = LineageNode(id=f"more{direction * step}", kind="more", label=f"+{total - len(shown)} more",
                                   detail="not drawn", depth=direction * step, hidden=total - len(shown))
                nodes[more.id] = more
            frontier = shown
    # The source object: what the first encode step read.
    sources = {}
    for node in list(nodes.values()):
        source = (node.artifact.inputs or {}).get("source") if node.artifact else None
        if source and node.artifact.kind in (Artifact.Kind.UNIT, Artifact.Kind.AUDIO):
            sid = f"s:{source.get('bucket')}/{source.get('key')}"
            if sid not in sources:
                version = source.get("version") or ""
                sources[sid] = LineageNode(
                    id=f"src{len(sources)}", kind="source", label=str(source.get("key", "")).rsplit("/", 1)[-1],
                    detail=f"s3://{source.get('bucket')}/{source.get('key')}" + (f" (version {version})" if version else ""),
                    depth=node.depth - 1,
                )
            src = sources[sid]
            src.depth = min(src.depth, node.depth - 1)
            edges.append((src.id, node.id))
    for src in sources.values():
        nodes[src.id] = src
    # Layout: one column per depth, nodes stacked; SVG coordinates of each node's box.
    columns: dict[int, list[LineageNode]] = {}
    for node in nodes.values():
        columns.setdefault(node.depth, []).append(node)
    depths = sorted(columns)
    col_w, row_h, box_w = 220, 44, 190
    tallest = max(len(c) for c in columns.values())
    for ci, depth in enumerate(depths):
        column = columns[depth]
        offset = (tallest - len(column)) * row_h / 2
        for ri, node in enumerate(column):
            node.x = 10 + ci * col_w
            node.y = 10 + offset + ri * row_h
    by_id = nodes
    drawn = [(by_id[a], by_id[b]) for a, b in dict.fromkeys(edges) if a in by_id and b in by_id]
    return LineageGraph(
        nodes=list(nodes.values()), edges=drawn, width=20 + len(depths) * col_w - (col_w - box_w),
        height=20 + tallest * row_h, focus=focus,
    )
