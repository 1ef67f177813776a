"""Reads of pipeline data shaped for the pages and sockets that show them."""

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from pipeline import progress
from pipeline.models import Asset, EncodeJob, IngestEvent, JobState, Rendition, Unit, UnitState


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


def job_seqs(*, job_ids: list[int], conn=None) -> dict[int, int]:
    """Each job's current progress sequence number, in one Redis round trip: a page listing
    many jobs is current to these, and drops "jobs" group messages at or below them."""
    if not job_ids:
        return {}
    import django_rq

    conn = conn or django_rq.get_connection("default")
    values = conn.mget([progress._seq_key(job_id) for job_id in job_ids])
    return {job_id: int(value or 0) for job_id, value in zip(job_ids, values, strict=True)}
