"""Formatting for the console's pages: durations, ages, and the long tables' rows."""

from django import template

from console import rows

register = template.Library()


@register.filter
def seconds(value) -> str:
    """12.3 -> "12.3 s"; 754 -> "12:34"; 3725 -> "1:02:05"."""
    return rows._seconds(None if value in (None, "") else float(value))


@register.filter
def age(value) -> str:
    """An age in seconds, short: "8 s", "4 min", "3 h", "2 d"."""
    if value is None:
        return "never"
    value = max(0, float(value))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= size:
            return f"{int(value // size)} {unit}"
    return f"{int(value)} s"


@register.filter
def chunk_label(index) -> str:
    return rows.chunk_label(index)


@register.filter
def job_row(job):
    return rows.job_row(job)


@register.filter
def event_row(event):
    return rows.event_row(event)


@register.filter
def unit_row(unit):
    return rows.unit_row(unit)


@register.filter
def grid_row(row, chunks):
    return rows.grid_row(row, len(chunks))
