"""Trend charts as inline SVG drawn on the server: no chart library, readable without
JavaScript, each with a text title and per-bar tooltips (and the table beside it for screen
readers)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 600, 170, 84, 22, 10


@dataclass(frozen=True)
class Point:
    label: str
    value: float
    bad: bool = False  # drawn in the warning colour (a run with failures)


def human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_seconds(value: float) -> str:
    if value < 90:
        return f"{value:.1f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def plain(value: float) -> str:
    return f"{value:,.0f}"


def bar_chart(*, chart_id: str, title: str, points: Sequence[Point], fmt: Callable[[float], str] = plain) -> SafeString:
    """A bar per point, the maximum marked on the axis."""
    if not points:
        return mark_safe('<p class="muted">No finished runs yet.</p>')
    top = max(p.value for p in points) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / len(points)
    bar_w = max(step * 0.7, 1)
    bars = []
    for i, p in enumerate(points):
        h = plot_h * (p.value / top)
        x = PAD_LEFT + i * step + (step - bar_w) / 2
        y = PAD_TOP + plot_h - h
        css = "bar bad" if p.bad else "bar"
        bars.append(
            f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}">'
            f"<title>{escape(p.label)}: {escape(fmt(p.value))}</title></rect>"
        )
    axis = (
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 4}" y2="{PAD_TOP + plot_h}"/>'
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + 12}" text-anchor="end">{escape(fmt(top))}</text>'
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>'
        f'<text class="tick" x="{PAD_LEFT}" y="{HEIGHT - 4}">{escape(points[0].label)}</text>'
        f'<text class="tick" x="{WIDTH - 4}" y="{HEIGHT - 4}" text-anchor="end">{escape(points[-1].label)}</text>'
    )
    return mark_safe(  # noqa: S308 - every interpolated text above is escaped
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-t">'
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>{axis}{"".join(bars)}</svg>'
    )


def run_charts(runs) -> list[dict]:
    """The trend charts of the runs page, oldest run first."""
    def label(run) -> str:
        return f"#{run.pk} {run.created_at:%m-%d %H:%M}"

    def series(get) -> list[Point]:
        return [Point(label(r), float(get(r)), bad=r.objects_failed > r.objects_repaired) for r in runs]

    return [
        {"id": "chart-bytes", "title": "Bytes copied per run",
         "svg": bar_chart(chart_id="chart-bytes", title="Bytes copied per run", points=series(lambda r: r.bytes_copied), fmt=human_bytes)},
        {"id": "chart-duration", "title": "Duration per run",
         "svg": bar_chart(chart_id="chart-duration", title="Duration per run", points=series(lambda r: r.duration_seconds), fmt=human_seconds)},
        {"id": "chart-throughput", "title": "Throughput (copy + verify)",
         "svg": bar_chart(chart_id="chart-throughput", title="Throughput per run", points=series(lambda r: r.throughput_bytes_per_second), fmt=lambda v: human_bytes(v) + "/s")},
        {"id": "chart-failures", "title": "Failures per run (unrepaired in red)",
         "svg": bar_chart(chart_id="chart-failures", title="Failures per run", points=series(lambda r: r.objects_failed))},
    ]
