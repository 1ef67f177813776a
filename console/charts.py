"""The workers page's charts, drawn server-side as inline SVG (no script, no library): numbers
in, markup out. Built with format_html like the console's long tables: a chart has hundreds of
numbers, and a template would localize and escape each through several layers."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 720
HEIGHT = 170
PAD_LEFT = 40
PAD_BOTTOM = 20
PAD_TOP = 8
PLOT_W = WIDTH - PAD_LEFT - 6
PLOT_H = HEIGHT - PAD_BOTTOM - PAD_TOP
QUEUE_COLOURS = {
    "encode": "#2857d6", "assemble": "#1e8e3e", "package": "#0b7a75", "publish": "#5e35b1",
    "ingest": "#b06000", "quality": "#ad1457", "backup": "#8e24aa", "security": "#c5221f", "webhooks": "#37474f",
    "default": "#5b6675",
}


def nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    exponent = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * exponent:
            return factor * exponent
    return 10 * exponent


def _y(value: float, top: float) -> float:
    return PAD_TOP + PLOT_H - PLOT_H * value / top


def _y_ticks(top: float) -> list[dict]:
    return [{"y": round(_y(v, top), 1), "label": f"{v:g}"} for v in (0, top / 2, top)]


def _x_ticks(start: datetime, end: datetime) -> list[dict]:
    span = (end - start).total_seconds()
    step = next(s for s in (600, 1800, 3600, 3 * 3600, 6 * 3600) if span / s <= 8)
    first = datetime.fromtimestamp(math.ceil(start.timestamp() / step) * step, tz=start.tzinfo)
    ticks = []
    at = first
    while at <= end:
        x = PAD_LEFT + PLOT_W * (at - start).total_seconds() / span
        ticks.append({"x": round(x, 1), "label": at.strftime("%H:%M")})
        at += timedelta(seconds=step)
    return ticks


def throughput_chart(series: dict) -> dict:
    """Stacked bars: units done (and failed, on top) per minute in each bucket."""
    done, failed, start, step = series["done"], series["failed"], series["start"], series["step"]
    n = len(done)
    end = start + step * n
    top = nice_ceiling(max((d + f for d, f in zip(done, failed, strict=True)), default=0))
    width = PLOT_W / max(n, 1)
    bars = []
    for i, (d, f) in enumerate(zip(done, failed, strict=True)):
        if not d and not f:
            continue
        x = round(PAD_LEFT + i * width, 2)
        y_done = _y(d, top)
        y_all = _y(d + f, top)
        at = start + step * i
        bars.append({
            "x": x, "w": round(max(width - 0.5, 0.6), 2),
            "y": round(y_done, 2), "h": round(PAD_TOP + PLOT_H - y_done, 2),
            "fy": round(y_all, 2), "fh": round(y_done - y_all, 2),
            "title": f"{at:%H:%M}: {d:.1f} done, {f:.1f} failed per minute",
        })
    total_minutes = max(n * step.total_seconds() / 60, 1)
    minutes = step.total_seconds() / 60
    chart = {
        "width": WIDTH, "height": HEIGHT, "plot_left": PAD_LEFT, "plot_bottom": PAD_TOP + PLOT_H,
        "plot_right": PAD_LEFT + PLOT_W, "bars": bars, "y_ticks": _y_ticks(top), "x_ticks": _x_ticks(start, end),
        "peak": max(done, default=0), "average": sum(d * minutes for d in done) / total_minutes,
        "failed_total": round(sum(f * minutes for f in failed)), "done_total": round(sum(d * minutes for d in done)),
    }
    chart["svg"] = throughput_svg(chart)
    return chart


def queue_depth_chart(series: dict) -> dict:
    """One line per queue that held anything; queues that stayed empty are only named."""
    start, end = series["start"], series["end"]
    span = max((end - start).total_seconds(), 1)
    lines = []
    quiet = []
    top = nice_ceiling(max((v for points in series["series"].values() for _, v in points), default=0))
    for queue, points in sorted(series["series"].items()):
        if not any(v for _, v in points):
            quiet.append(queue)
            continue
        coords = " ".join(
            f"{PAD_LEFT + PLOT_W * (at - start).total_seconds() / span:.1f},{_y(v, top):.1f}" for at, v in points
        )
        lines.append({"queue": queue, "points": coords, "colour": QUEUE_COLOURS.get(queue, "#111827"),
                      "last": points[-1][1], "peak": max(v for _, v in points)})
    chart = {
        "width": WIDTH, "height": HEIGHT, "plot_left": PAD_LEFT, "plot_bottom": PAD_TOP + PLOT_H,
        "plot_right": PAD_LEFT + PLOT_W, "lines": lines, "quiet": quiet, "y_ticks": _y_ticks(top),
        "x_ticks": _x_ticks(start, end), "empty": not series["series"],
    }
    chart["svg"] = queue_depth_svg(chart)
    return chart


def _axes(c: dict) -> SafeString:
    grid = format_html_join(
        "", '<line class="grid" x1="{0}" x2="{1}" y1="{2}" y2="{2}"/>'
        '<text x="{3}" y="{2}" text-anchor="end" dominant-baseline="middle">{4}</text>',
        ((c["plot_left"], c["plot_right"], t["y"], c["plot_left"] - 4, t["label"]) for t in c["y_ticks"]),
    )
    x_labels = format_html_join(
        "", '<text x="{}" y="{}" text-anchor="middle">{}</text>',
        ((t["x"], c["height"] - 4, t["label"]) for t in c["x_ticks"]),
    )
    axis = format_html('<line class="axis" x1="{0}" x2="{1}" y1="{2}" y2="{2}"/>', c["plot_left"], c["plot_right"],
                       c["plot_bottom"])
    return format_html("{}{}{}", grid, axis, x_labels)


def throughput_svg(c: dict) -> SafeString:
    bars = format_html_join(
        "", '<g><title>{}</title><rect class="done" x="{}" y="{}" width="{}" height="{}"/>{}</g>',
        (
            (b["title"], b["x"], b["y"], b["w"], b["h"],
             format_html('<rect class="failed" x="{}" y="{}" width="{}" height="{}"/>', b["x"], b["fy"], b["w"], b["fh"])
             if b["fh"] else "")
            for b in c["bars"]
        ),
    )
    label = f"Units finished per minute, peak {c['peak']:.1f}, average {c['average']:.1f}"
    return format_html('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}</svg>',
                       c["width"], c["height"], label, _axes(c), bars)


def queue_depth_svg(c: dict) -> SafeString:
    lines = format_html_join(
        "", '<polyline points="{}" stroke="{}"><title>{}</title></polyline>',
        ((line["points"], line["colour"], line["queue"]) for line in c["lines"]),
    )
    label = "Queue depths over time" + "".join(f"; {x['queue']} now {x['last']}, peak {x['peak']}" for x in c["lines"])
    return format_html('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}</svg>',
                       c["width"], c["height"], label, _axes(c), lines)
