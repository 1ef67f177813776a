"""Keyset pagination: a page starts after (or ends before) the sort key of a row, so page 200
costs what page 1 costs, and rows added meanwhile neither repeat nor vanish between pages.

A cursor is the sort key of the row at a page's edge, as opaque URL-safe text. A tampered or
stale cursor is ignored (the first page is shown), never an error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet


@dataclass(frozen=True)
class Page:
    items: list
    next_cursor: str | None
    prev_cursor: str | None

    @property
    def has_other_pages(self) -> bool:
        return bool(self.next_cursor or self.prev_cursor)


def _encode(values: list) -> str:
    tagged = [["d", v.isoformat()] if isinstance(v, datetime) else ["v", v] for v in values]
    return base64.urlsafe_b64encode(json.dumps(tagged, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str, size: int) -> list | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tagged = json.loads(raw)
        values = [datetime.fromisoformat(v) if tag == "d" else v for tag, v in tagged]
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        return None
    if len(values) != size or not all(isinstance(v, int | str | float | datetime) for v in values):
        return None
    return values


def _field(order: str) -> tuple[str, bool]:
    return (order[1:], True) if order.startswith("-") else (order, False)


def _beyond(ordering: Sequence[str], values: list, *, forward: bool) -> Q:
    """Rows strictly after `values` in `ordering` (forward) or strictly before it."""
    condition = Q()
    for i, order in enumerate(ordering):
        name, desc = _field(order)
        lookup = "lt" if desc == forward else "gt"
        term = Q(**{f"{name}__{lookup}": values[i]})
        for j in range(i):
            term &= Q(**{_field(ordering[j])[0]: values[j]})
        condition |= term
    return condition


def _key(item, ordering: Sequence[str]) -> str:
    get = item.get if isinstance(item, dict) else lambda name: getattr(item, name)
    return _encode([get(_field(order)[0]) for order in ordering])


def keyset_page(
    qs: QuerySet, *, ordering: Sequence[str], per_page: int, after: str | None = None, before: str | None = None
) -> Page:
    """One page of `qs` in `ordering` (which must end in a unique field, e.g. "-id")."""
    after_values = _decode(after, len(ordering)) if after else None
    before_values = _decode(before, len(ordering)) if before else None
    if before_values is not None:
        reverse = [order[1:] if order.startswith("-") else f"-{order}" for order in ordering]
        rows = list(qs.filter(_beyond(ordering, before_values, forward=False)).order_by(*reverse)[: per_page + 1])
        has_prev = len(rows) > per_page
        items = rows[:per_page][::-1]
        if not items:  # nothing before the cursor any more: show the first page
            return keyset_page(qs, ordering=ordering, per_page=per_page)
        return Page(items, _key(items[-1], ordering), _key(items[0], ordering) if has_prev else None)
    if after_values is not None:
        qs = qs.filter(_beyond(ordering, after_values, forward=True))
    rows = list(qs.order_by(*ordering)[: per_page + 1])
    items = rows[:per_page]
    next_cursor = _key(items[-1], ordering) if len(rows) > per_page else None
    prev_cursor = _key(items[0], ordering) if after_values is not None and items else None
    return Page(items, next_cursor, prev_cursor)
