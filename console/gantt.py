"""The job page's timeline: a Gantt of the job's units per worker over time, as inline SVG.

One row per worker that ran a unit, one bar per attempt that started (its last one: the unit
row keeps one start and finish), coloured by the unit's state; above them the number of units
waiting for a worker over time, so an operator sees whether the time went to waiting or to
encoding, and on which worker. Built from the unit dicts the page already fetched (no query).
"""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 720
LABEL_W = 170
PLOT_W = WIDTH - LABEL_W - 8
ROW_H = 18
QUEUE_H = 34
AXIS_H = 18
COLOURS = {
    "running": "#2857d6",
    "done": "#1e8e3e",
    "failed": "#c5221f",
    "cancelled": "#9aa0a6",
    "queued": "#b06000",
}


def _seconds(at: datetime, start: datetime) -> float:
    return (at - start).total_seconds()


def _waiting_path(units: list[dict], start: datetime, end: datetime, x, top: int) -> tuple[str, int]:
    """A step line of how many units waited (planned, not started) at each moment."""
    changes = [(start, +1) for _ in units]
    changes += [(u["started_at"], -1) for u in units if u["started_at"] is not None]
    changes.sort(key=lambda change: change[0])
    peak, level, points = 0, 0, []
    for at, delta in changes:
        points.append((x(at), level))
        level += delta
        points.append((x(at), level))
        peak = max(peak, level)
    points.append((x(end), level))
    scale = (QUEUE_H - 6) / max(peak, 1)
    coords = " ".join(f"{px:.1f},{top + QUEUE_H - 2 - n * scale:.1f}" for px, n in points)
    return coords, peak


def job_timeline(*, job_started: datetime | None, units: list[dict], now: datetime) -> dict | None:
    """The chart's data and markup, or None while no unit has started."""
    started = [u for u in units if u["started_at"] is not None]
    if not started:
        return None
    start = min(
        [job_started, *(u["started_at"] for u in started)]
        if job_started
        else [u["started_at"] for u in started]
    )
    running = any(u["finished_at"] is None or u["state"] == "running" for u in started)
    end = max([now] if running else [u["finished_at"] for u in started])
    span = max(_seconds(end, start), 0.001)

    def x(at: datetime) -> float:
        return LABEL_W + PLOT_W * _seconds(at, start) / span

    workers = sorted({u["worker"] or "(unknown worker)" for u in started})
    rows = {w: i for i, w in enumerate(workers)}
    top = QUEUE_H + 4
    bars = []
    for u in started:
        finish = u["finished_at"] if u["finished_at"] is not None and u["state"] != "running" else now
        x0, x1 = x(u["started_at"]), x(max(finish, u["started_at"]))
        chunk = "audio" if u["chunk__index"] is None else f"chunk {u['chunk__index'] + 1}"
        bars.append({
            "x": round(x0, 1), "w": round(max(x1 - x0, 1.0), 1), "y": top + rows[u["worker"] or "(unknown worker)"] * ROW_H + 2,
            "colour": COLOURS.get(u["state"], "#5b6675"), "state": u["state"],
            "title": f"{u['rendition']} {chunk}: {u['state']}, {_seconds(finish, u['started_at']):.1f} s "
                     f"from +{_seconds(u['started_at'], start):.1f} s",
        })  # fmt: skip
    queue_points, queue_peak = _waiting_path(units, start, end, x, 0)
    height = top + len(workers) * ROW_H + AXIS_H
    chart = {
        "workers": workers, "bars": bars, "span_s": span, "queue_peak": queue_peak, "height": height,
        "busy_s": sum(_seconds(min(u["finished_at"] or now, now), u["started_at"]) for u in started),
    }  # fmt: skip
    chart["svg"] = _svg(chart, queue_points=queue_points, top=top)
    return chart


def _ticks(span: float) -> list[float]:
    step = next(
        (s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200) if span / s <= 8), 14400
    )
    return [n * step for n in range(int(span // step) + 1)]


def _svg(c: dict, *, queue_points: str, top: int) -> SafeString:
    labels = format_html_join(
        "", '<text class="label" x="{}" y="{}" text-anchor="end">{}</text>',
        ((LABEL_W - 6, top + i * ROW_H + 13, w if len(w) <= 26 else w[:12] + "…" + w[-12:]) for i, w in enumerate(c["workers"])),
    )  # fmt: skip
    bars = format_html_join(
        "", '<rect class="bar unit-{}" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
        ((b["state"], b["x"], b["y"], b["w"], ROW_H - 4, b["colour"], b["title"]) for b in c["bars"]),
    )  # fmt: skip
    bottom = c["height"] - AXIS_H
    ticks = format_html_join(
        "", '<line class="grid" x1="{0}" x2="{0}" y1="0" y2="{1}"/><text x="{0}" y="{2}" text-anchor="middle">+{3}</text>',
        ((round(LABEL_W + PLOT_W * t / c["span_s"], 1), bottom, bottom + 13, _label(t)) for t in _ticks(c["span_s"])),
    )  # fmt: skip
    return format_html(
        '<svg class="chart gantt" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-labelledby="gantt-h">'
        '{ticks}<text class="label" x="{lx}" y="{qy}" text-anchor="end">waiting (peak {peak})</text>'
        '<polyline class="queue" fill="none" stroke="{qc}" points="{qp}"/>{labels}{bars}</svg>',
        w=WIDTH, h=c["height"], ticks=ticks, lx=LABEL_W - 6, qy=QUEUE_H - 4, peak=c["queue_peak"],
        qc=COLOURS["queued"], qp=queue_points, labels=labels, bars=bars,
    )  # fmt: skip


def _label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
