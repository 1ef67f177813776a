"""The quality partial's pictures (templates/pipeline/_quality.html), drawn server-side as inline
SVG: a chunk x rendition heatmap and a rate-quality chart. Numbers in, markup out, built with
format_html like console/charts.py (hundreds of cells: a template per cell would be slow)."""

from __future__ import annotations

import math

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from pipeline.models import QualityTaskState
from pipeline.quality.selectors import job_quality_report

register = template.Library()

# Colour bins, worst first (viridis: ordered in lightness, readable with colour blindness).
PALETTE = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725"]
BINS = {
    "vmaf": [20, 40, 60, 70, 80, 90, 95],
    "psnr": [25, 30, 33, 36, 39, 42, 45],
}
UNITS = {"vmaf": "", "psnr": " dB", "ssim": ""}
LABEL_W = 120
HEAD_H = 22
ROW_H = 28


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if metric == "ssim" else f"{value:.1f}"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def _bin(metric: str, value: float) -> int:
    return sum(1 for edge in BINS[metric] if value >= edge)


def legend(metric: str) -> list[dict]:
    edges = BINS[metric]
    unit = UNITS[metric]
    items = []
    for i, colour in enumerate(PALETTE):
        if i == 0:
            text = f"< {edges[0]}{unit}"
        elif i == len(edges):
            text = f"≥ {edges[-1]}{unit}"
        else:
            text = f"{edges[i - 1]}–{edges[i]}{unit}"
        items.append({"colour": colour, "text": text})
    return items


def _scores_text(scores: dict, labels: dict) -> str:
    parts = []
    for metric in ("vmaf", "psnr", "ssim"):
        if metric in scores:
            s = scores[metric]
            parts.append(
                f"{labels[metric]} mean {_fmt(metric, s['mean'])}, 5th percentile {_fmt(metric, s['p5'])}"
            )
    return "; ".join(parts)


_CELL_STATE_TEXT = {
    QualityTaskState.QUEUED: "measuring… (queued)",
    QualityTaskState.RUNNING: "measuring…",
    "waiting": "waiting for the chunk to be encoded",
}


def heatmap_svg(report: dict) -> SafeString:
    rows, chunks, metric = report["rows"], report["chunks"], report["metric"] or "psnr"
    labels = report["metric_labels"]
    if not rows or not chunks:
        return mark_safe("")  # noqa: S308 - a constant
    cell_w = max(16, min(56, 600 // len(chunks)))
    width = LABEL_W + cell_w * len(chunks) + 4
    height = HEAD_H + ROW_H * len(rows) + 4
    show_values = cell_w >= 34
    parts = [
        format_html(
            '<text x="{}" y="{}" class="qc-axis" text-anchor="end">chunk</text>', LABEL_W - 8, HEAD_H - 7
        )
    ]
    for j, chunk in enumerate(chunks):
        if len(chunks) <= 30 or j % math.ceil(len(chunks) / 30) == 0:
            parts.append(format_html(
                '<text x="{}" y="{}" class="qc-axis" text-anchor="middle">{}</text>',
                LABEL_W + j * cell_w + cell_w / 2, HEAD_H - 7, chunk["index"] + 1,
            ))  # fmt: skip
    for i, row in enumerate(rows):
        y = HEAD_H + i * ROW_H
        parts.append(format_html(
            '<text x="{}" y="{}" class="qc-label" text-anchor="end">{}</text>', LABEL_W - 8, y + ROW_H / 2 + 4, row["name"]
        ))  # fmt: skip
        for j, cell in enumerate(row["cells"]):
            x = LABEL_W + j * cell_w
            where = f"{row['name']}, chunk {cell['chunk'] + 1} ({_clock(cell['start_s'])}–{_clock(cell['end_s'])})"
            done = cell["state"] == QualityTaskState.DONE
            value = (cell["scores"].get(metric) or {}).get("mean") if done else None
            if done and value is not None:
                level = _bin(metric, value)
                fill, ink, mark = (
                    PALETTE[level],
                    "#fff" if level < 4 else "#111",
                    _fmt(metric, value) if metric != "ssim" else "",
                )
                title = f"{where}: {_scores_text(cell['scores'], labels)}"
                css = "qc-cell"
            elif done:
                fill, ink, mark, css = "#e5e7eb", "#374151", "n/a", "qc-cell"
                title = f"{where}: no {labels[metric]} measured; {_scores_text(cell['scores'], labels)}"
            elif cell["state"] == QualityTaskState.FAILED:
                fill, ink, mark, css = "#fde2e1", "#a50e0e", "✕", "qc-cell qc-failed"
                title = f"{where}: measurement failed after {cell['attempts']} attempt(s): {cell['error']}"
            else:
                fill, ink, mark, css = "url(#qc-hatch)", "#374151", "…", "qc-cell qc-pending"
                title = f"{where}: {_CELL_STATE_TEXT.get(cell['state'], cell['state'])}"
            parts.append(format_html(
                '<g class="{}" tabindex="0" role="img" aria-label="{}"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>{}</g>',
                css, title, title, x + 1, y + 1, cell_w - 2, ROW_H - 2, fill,
                format_html('<text x="{}" y="{}" fill="{}" text-anchor="middle" class="qc-value">{}</text>',
                            x + cell_w / 2, y + ROW_H / 2 + 4, ink, mark)
                if (show_values or mark in ("…", "✕")) else "",
            ))  # fmt: skip
    return format_html(
        '<svg class="qc-heatmap" width="{}" height="{}" viewBox="0 0 {} {}" role="group" aria-labelledby="qc-heatmap-title">'
        '<title id="qc-heatmap-title">Quality by rendition (rows) and chunk (columns), coloured by {} mean</title>'
        '<defs><pattern id="qc-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#f3f4f6"/><line x1="0" y1="0" x2="0" y2="6" stroke="#cbd5e1" stroke-width="3"/>'
        "</pattern></defs>{}</svg>",
        width, height, width, height, labels[metric], format_html_join("", "{}", ((p,) for p in parts)),
    )  # fmt: skip


CHART_W, CHART_H = 640, 280
PAD_L, PAD_R, PAD_T, PAD_B = 52, 120, 12, 40


def _nice_step(span: float) -> float:
    raw = span / 5
    exponent = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next((f * exponent for f in (1, 2, 5, 10) if raw <= f * exponent), 10 * exponent)


def rate_quality_svg(report: dict) -> SafeString:
    """Bitrate (x) against the colour metric's mean (y), one labelled point per measured
    rendition, with a whisker down to its 5th percentile."""
    metric = report["metric"]
    labels = report["metric_labels"]
    points = [
        (r["bitrate_kbps"], r["scores"][metric]["mean"], r["scores"][metric]["p5"], r["name"])
        for r in report["rows"]
        if metric and r["bitrate_kbps"] and metric in r["scores"]
    ]
    if not points:
        return mark_safe("")  # noqa: S308 - a constant
    points.sort()
    x_step = _nice_step(max(p[0] for p in points))
    x_top = x_step * math.ceil(max(p[0] for p in points) * 1.05 / x_step)
    if metric == "vmaf":
        y_low, y_high = 0.0, 100.0
    else:
        y_low = 5 * math.floor(min(p[2] for p in points) / 5)
        y_high = 5 * math.ceil(max(p[1] for p in points) / 5 + 0.01)
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def px(kbps: float) -> float:
        return round(PAD_L + plot_w * kbps / x_top, 1)

    def py(value: float) -> float:
        return round(PAD_T + plot_h - plot_h * (value - y_low) / (y_high - y_low), 1)

    parts = []
    y_step = _nice_step(y_high - y_low)
    tick = y_low
    while tick <= y_high + 1e-9:
        parts.append(format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" class="qc-grid"/><text x="{}" y="{}" class="qc-axis" text-anchor="end">{}</text>',
            PAD_L, PAD_L + plot_w, py(tick), py(tick), PAD_L - 6, py(tick) + 4, f"{tick:g}",
        ))  # fmt: skip
        tick += y_step
    tick = 0.0
    while tick <= x_top + 1e-9:
        parts.append(format_html(
            '<text x="{}" y="{}" class="qc-axis" text-anchor="middle">{}</text>',
            px(tick), PAD_T + plot_h + 16, f"{tick:,.0f}",
        ))  # fmt: skip
        tick += x_step
    parts.append(format_html(
        '<polyline class="qc-line" fill="none" points="{}"/>', " ".join(f"{px(b)},{py(m)}" for b, m, _, _ in points)
    ))  # fmt: skip
    unit = UNITS[metric]
    for kbps, mean, p5, name in points:
        title = (f"{name}: {kbps:,} kb/s, {labels[metric]} mean {_fmt(metric, mean)}{unit}, "
                 f"5th percentile {_fmt(metric, p5)}{unit}")  # fmt: skip
        parts.append(format_html(
            '<g class="qc-point" tabindex="0" role="img" aria-label="{}"><title>{}</title>'
            '<line x1="{}" x2="{}" y1="{}" y2="{}" class="qc-whisker"/>'
            '<circle cx="{}" cy="{}" r="5"/><text x="{}" y="{}" class="qc-label">{}</text></g>',
            title, title, px(kbps), px(kbps), py(mean), py(p5), px(kbps), py(mean), px(kbps) + 8, py(mean) - 6, name,
        ))  # fmt: skip
    return format_html(
        '<svg class="qc-chart" width="{}" height="{}" viewBox="0 0 {} {}" role="group" aria-labelledby="qc-chart-title">'
        '<title id="qc-chart-title">Rate–quality: bitrate against {} mean, one point per rendition</title>'
        '<line x1="{}" x2="{}" y1="{}" y2="{}" class="qc-axisline"/><line x1="{}" x2="{}" y1="{}" y2="{}" class="qc-axisline"/>'
        "{}"
        '<text x="{}" y="{}" class="qc-axis-title" text-anchor="middle">bitrate (kb/s, measured average)</text>'
        '<text x="12" y="{}" class="qc-axis-title" text-anchor="middle" transform="rotate(-90 12 {})">{} (mean; whisker: 5th percentile)</text>'
        "</svg>",
        CHART_W, CHART_H, CHART_W, CHART_H, labels[metric],
        PAD_L, PAD_L + plot_w, PAD_T + plot_h, PAD_T + plot_h, PAD_L, PAD_L, PAD_T, PAD_T + plot_h,
        format_html_join("", "{}", ((p,) for p in parts)),
        PAD_L + plot_w / 2, CHART_H - 4, PAD_T + plot_h / 2, PAD_T + plot_h / 2, labels[metric],
    )  # fmt: skip


@register.simple_tag
def quality_panel(job) -> dict:
    """`{% quality_panel job as qc %}`: the report and its two pictures."""
    report = job_quality_report(job=job)
    return {
        "report": report,
        "heatmap": heatmap_svg(report),
        "chart": rate_quality_svg(report),
        "legend": legend(report["metric"] or "psnr"),
    }


@register.filter
def qc_score(scores: dict, metric: str) -> str:
    """`{{ row.scores|qc_score:"vmaf" }}` -> "93.1 / 88.0" (mean / 5th percentile)."""
    s = (scores or {}).get(metric)
    if not s:
        return "–"
    return f"{_fmt(metric, s['mean'])} / {_fmt(metric, s['p5'])}"
