"""Jobs: state, progress over their units, and the units themselves."""

from django.http import HttpRequest
from ninja import Router

from api import selectors
from api.v1.auth import publisher
from api.v1.errors import ERROR_CODES, ErrorOut, not_found
from api.v1.schemas import JobOut, UnitOut
from pipeline import selectors as pipeline_selectors
from pipeline.models import EncodeJob, Unit

router = Router(tags=["jobs"])


def job_out(job: EncodeJob) -> dict:
    counts = pipeline_selectors.job_unit_counts(job_id=job.pk)
    total = counts["total"] or 0
    return {
        "id": job.pk, "asset": job.asset_id, "state": job.state, "profile": job.profile.slug,
        "failure_reason": job.failure_reason, "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "units_total": total, "units_done": counts["done"] or 0,
        "units_running": counts["running"] or 0, "units_failed": counts["failed"] or 0,
        "progress": round((counts["done"] or 0) / total, 4) if total else (1.0 if job.state == "published" else 0.0),
    }  # fmt: skip


def _job(request: HttpRequest, job_id: int) -> EncodeJob:
    job = selectors.job_owned(job_id=job_id, user=publisher(request))
    if job is None:
        raise not_found("job")
    return job


@router.get("/jobs/{job_id}", response={200: JobOut, ERROR_CODES: ErrorOut})
def job_get(request: HttpRequest, job_id: int):
    return job_out(_job(request, job_id))


@router.get("/jobs/{job_id}/units", response={200: list[UnitOut], ERROR_CODES: ErrorOut})
def job_units(request: HttpRequest, job_id: int):
    job = _job(request, job_id)
    units = Unit.objects.filter(job=job).select_related("rendition", "chunk").order_by("rendition__name", "chunk__index")
    return [
        {"id": u.pk, "rendition": u.rendition.name, "chunk": u.chunk.index if u.chunk else None, "state": u.state,
         "attempts": u.attempts, "wall_s": u.wall_s, "error": u.error}
        for u in units
    ]  # fmt: skip
