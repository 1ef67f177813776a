"""Assets: list (filters, cursor paging), get, update, delete, takedown, renditions, jobs,
playback URLs."""

from datetime import UTC, datetime

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field, field_validator

from api import selectors
from api.v1.auth import publisher, write_required
from api.v1.errors import ERROR_CODES, ApiError, ErrorOut, not_found
from api.v1.jobs import job_out
from api.v1.schemas import AssetOut, AssetPage, AssetPatch, JobOut, PlaybackOut, RenditionOut, TakedownIn
from delivery import services as delivery_services
from delivery.models import AssetDelivery
from pipeline import selectors as pipeline_selectors
from pipeline.models import Asset, AssetState, RenditionKind

router = Router(tags=["assets"])


class AssetFilters(Schema):
    state: AssetState | None = None
    q: str = Field(default="", max_length=100, description="words of the title")
    created_after: datetime | None = None
    created_before: datetime | None = None
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=20, ge=1, le=100)

    @field_validator("q")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:  # no database stores it in a query
            raise ValueError("q must not contain NUL characters")
        return value

    @field_validator("created_after", "created_before")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """In UTC (naive: taken as UTC): PostgreSQL refuses offsets beyond ±15:59, which ISO 8601
        parsers accept."""
        if value is None:
            return None
        try:
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError as exc:
            raise ValueError("the time is out of range once in UTC") from exc


def asset_out(asset: Asset) -> dict:
    try:
        delivery = asset.delivery  # loaded with the page (select_related) once it exists
    except AssetDelivery.DoesNotExist:
        delivery = delivery_services.asset_delivery_ensure(asset)
    latest = getattr(asset, "job_id", None)
    latest_state = getattr(asset, "job_state", None)
    if not hasattr(asset, "job_id"):
        job = pipeline_selectors.job_latest(asset=asset)
        latest, latest_state = (job.pk, job.state) if job else (None, None)
    return {
        "id": asset.pk, "title": asset.title, "state": asset.state, "created_at": asset.created_at,
        "duration_s": asset.duration_s, "width": asset.width, "height": asset.height, "source_size": asset.source_size,
        "metadata": delivery.metadata, "policy": delivery.policy, "playback_id": delivery.playback_id,
        "downloadable": delivery.downloadable, "legal_hold": delivery.legal_hold, "taken_down": delivery.is_taken_down,
        "latest_job": latest, "latest_job_state": latest_state,
    }  # fmt: skip


def _asset(request: HttpRequest, asset_id: int) -> Asset:
    asset = selectors.asset_owned(asset_id=asset_id, user=publisher(request))
    if asset is None:
        raise not_found("asset")
    return asset


def _video_rungs(asset: Asset) -> list[str]:
    job = pipeline_selectors.job_published_latest(asset=asset)
    if job is None:
        return []
    return [r.name for r in pipeline_selectors.job_renditions(job_id=job.pk) if r.kind == RenditionKind.VIDEO]


@router.get("/assets", response={200: AssetPage, ERROR_CODES: ErrorOut})
def assets_list(request: HttpRequest, filters: Query[AssetFilters]):
    try:
        rows, next_cursor = selectors.assets_page(
            publisher=publisher(request), state=filters.state, search=filters.q.strip(),
            created_after=filters.created_after, created_before=filters.created_before,
            cursor=filters.cursor, limit=filters.limit,
        )  # fmt: skip
    except selectors.CursorInvalid as exc:
        raise ApiError(400, "cursor_invalid", str(exc)) from exc
    return {"items": [asset_out(a) for a in rows], "next_cursor": next_cursor}


@router.get("/assets/{asset_id}", response={200: AssetOut, ERROR_CODES: ErrorOut})
def asset_get(request: HttpRequest, asset_id: int):
    return asset_out(_asset(request, asset_id))


@router.patch("/assets/{asset_id}", response={200: AssetOut, ERROR_CODES: ErrorOut})
def asset_update(request: HttpRequest, asset_id: int, payload: AssetPatch):
    write_required(request)
    asset = _asset(request, asset_id)
    try:
        delivery_services.asset_details_update(
            asset=asset, actor=publisher(request), title=payload.title, metadata=payload.metadata,
            policy=payload.policy, downloadable=payload.downloadable, legal_hold=payload.legal_hold,
            available_rungs=_video_rungs(asset) if payload.downloadable is not None else None,
        )  # fmt: skip
    except delivery_services.DeliveryRefused as exc:
        raise ApiError(400, "invalid", str(exc)) from exc
    asset.refresh_from_db()
    return asset_out(asset)


@router.delete("/assets/{asset_id}", response={204: None, ERROR_CODES: ErrorOut})
def asset_delete(request: HttpRequest, asset_id: int):
    write_required(request)
    delivery_services.asset_delete(asset=_asset(request, asset_id), actor=publisher(request))
    return Status(204, None)


@router.post("/assets/{asset_id}/takedown", response={200: AssetOut, ERROR_CODES: ErrorOut})
def asset_takedown(request: HttpRequest, asset_id: int, payload: TakedownIn):
    write_required(request)
    asset = _asset(request, asset_id)
    delivery_services.asset_takedown(asset=asset, actor=publisher(request), reason=payload.reason)
    return asset_out(asset)


@router.delete("/assets/{asset_id}/takedown", response={200: AssetOut, ERROR_CODES: ErrorOut})
def asset_takedown_lift(request: HttpRequest, asset_id: int):
    write_required(request)
    asset = _asset(request, asset_id)
    delivery_services.asset_takedown_lift(asset=asset, actor=publisher(request))
    return asset_out(asset)


@router.get("/assets/{asset_id}/renditions", response={200: list[RenditionOut], ERROR_CODES: ErrorOut})
def asset_renditions(request: HttpRequest, asset_id: int):
    asset = _asset(request, asset_id)
    job = pipeline_selectors.job_published_latest(asset=asset) or pipeline_selectors.job_latest(asset=asset)
    if job is None:
        return []
    downloadable = set(delivery_services.asset_delivery_ensure(asset).downloadable)
    return [
        {"id": r.pk, "name": r.name, "kind": r.kind, "state": r.state, "width": r.width, "height": r.height,
         "bitrate_kbps": r.bitrate_kbps, "codecs": r.codecs, "duration_s": r.duration_s,
         "units_total": r.units_total, "units_done": r.units_done, "downloadable": r.name in downloadable}
        for r in pipeline_selectors.job_renditions(job_id=job.pk)
    ]  # fmt: skip


@router.get("/assets/{asset_id}/jobs", response={200: list[JobOut], ERROR_CODES: ErrorOut})
def asset_jobs(request: HttpRequest, asset_id: int):
    asset = _asset(request, asset_id)
    return [job_out(job) for job in asset.jobs.select_related("profile").order_by("-created_at", "-id")[:50]]


class PlaybackQuery(Schema):
    expires_in: int | None = Field(default=None, ge=60, le=7 * 24 * 3600, description="seconds a signed URL lives")


@router.get("/assets/{asset_id}/playback", response={200: PlaybackOut, ERROR_CODES: ErrorOut})
def asset_playback(request: HttpRequest, asset_id: int, query: Query[PlaybackQuery]):
    asset = _asset(request, asset_id)
    job = pipeline_selectors.job_published_latest(asset=asset)
    return delivery_services.playback_urls(asset=asset, job=job, seconds=query.expires_in)
