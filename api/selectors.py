"""Reads of API v1, shaped for its responses: an asset page with each asset's delivery and latest
job in one query, and cursors over (created_at, id)."""

import base64
import binascii
import json
from datetime import UTC, datetime

from django.db.models import OuterRef, Q, QuerySet, Subquery

from pipeline import selectors as pipeline_selectors
from pipeline.models import Asset, EncodeJob


class CursorInvalid(ValueError):
    pass


def cursor_encode(asset: Asset) -> str:
    raw = json.dumps({"t": asset.created_at.isoformat(), "i": asset.pk}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        at = datetime.fromisoformat(data["t"])
        return (at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)), int(data["i"])
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError, OverflowError) as exc:
        raise CursorInvalid("cursor is not one this API gave: pass next_cursor from the previous page unchanged") from exc


def assets_page(
    *, publisher, state: str | None, search: str, created_after: datetime | None, created_before: datetime | None,
    cursor: str | None, limit: int,
) -> tuple[list[Asset], str | None]:
    latest = EncodeJob.objects.filter(asset=OuterRef("pk")).order_by("-created_at", "-id")
    qs: QuerySet[Asset] = pipeline_selectors.assets_for_publisher(publisher=publisher, state=state, search=search)
    qs = qs.select_related("delivery").annotate(
        job_id=Subquery(latest.values("id")[:1]), job_state=Subquery(latest.values("state")[:1])
    )
    if created_after:
        qs = qs.filter(created_at__gt=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    if cursor:
        at, pk = cursor_decode(cursor)
        qs = qs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
    rows = list(qs.order_by("-created_at", "-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, cursor_encode(rows[-1]) if more and rows else None


def asset_owned(*, asset_id: int, user) -> Asset | None:
    """The asset if the token's publisher may see it, exactly as the studio pages decide."""
    return pipeline_selectors.asset_visible_to(asset_id=asset_id, user=user)


def job_owned(*, job_id: int, user) -> EncodeJob | None:
    qs = EncodeJob.objects.select_related("asset", "profile").filter(pk=job_id)
    if not user.has_perm("core.access_operations"):
        qs = qs.filter(asset__publisher=user)
    return qs.first()
