"""Structured logs: context every line carries, and the JSON formatter (LOG_FORMAT=json).

Context lives in a contextvar, so each request (a thread or a task under daphne) and each RQ
job sees only its own: request id and user (core.middleware), rq id, job id, unit id (the
worker class, ops/rqworker.py) and one trace id per uploaded object, the same from the
upload's first request through every worker step to publication (`trace_id_for`).
"""

import contextlib
import contextvars
import hashlib
import json
import logging
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime

from django.core.exceptions import ImproperlyConfigured

FIELDS = ("request_id", "user", "trace_id", "job_id", "unit_id", "rq_id")

_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("reelflow_log_context", default=None)


def trace_id_for(bucket: str, key: str) -> str:
    """The trace id of an uploaded object: derived from where it lands, so the studio (which
    names the key), the intake (which is told the key) and every worker (which reads it from
    the asset) arrive at the same id without passing it along."""
    return hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:16]


def current() -> dict:
    return dict(_context.get() or {})


def bind(**fields) -> None:
    """Add fields to the current context (until the surrounding `scope` ends)."""
    _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v not in (None, "")}})


@contextlib.contextmanager
def scope(*, fresh: bool = False, **fields) -> Iterator[None]:
    """Fields for the lines logged inside the block; the previous context comes back after it.
    `fresh`: start from nothing instead of the surrounding context (a request, an RQ job: what
    an earlier unit of work bound must not leak into it)."""
    base = {} if fresh else (_context.get() or {})
    token = _context.set({**base, **{k: v for k, v in fields.items() if v not in (None, "")}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context onto every record (both formatters read it from there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        for field in FIELDS:
            if not hasattr(record, field):
                value = ctx.get(field, "")
                # Lazy values (the request's user) are read when the line is written.
                setattr(record, field, value if isinstance(value, str | int) else str(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, the context fields that
    are set, process id, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for field in FIELDS:
            value = getattr(record, field, "")
            if value not in ("", None):
                line[field] = value
        if record.exc_info:
            line["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(line, default=str)


class PlainFormatter(logging.Formatter):
    """Readable lines for `make run`: the usual line, then the context fields that are set."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if getattr(record, f, ""))
        if not extra:
            return text
        first, _, rest = text.partition("\n")
        return f"{first} [{extra}]" + (f"\n{rest}" if rest else "")


def logging_config(*, fmt: str, level: str) -> dict:
    """The LOGGING setting for LOG_FORMAT `fmt` ("json" or "plain")."""
    if fmt not in ("json", "plain"):
        raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'plain', not {fmt!r}")
    formatter = (
        {"()": "core.logs.JsonFormatter"}
        if fmt == "json"
        else {"()": "core.logs.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "core.logs.ContextFilter"}},
        "formatters": {"main": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "main", "filters": ["context"]}
        },
        "root": {"handlers": ["console"], "level": level},
        # RQ's worker configures its own "rq.worker" handler; ours carries the context instead.
        "loggers": {
            "django.channels.server": {"level": "WARNING"},
            "rq.worker": {"handlers": ["console"], "level": level, "propagate": False},
        },
    }
