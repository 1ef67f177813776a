"""Shared by the service modules: resolving places, who drives a run, alerts."""

import hashlib
import os
import socket
from datetime import datetime, timedelta

import psutil
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone

from backups import storage
from backups.models import BackupPolicy, PolicySource
from core.models import AlertSeverity
from core.services import alert_raise

ALERT_SOURCE = "backups"


def process_label() -> str:
    """Who is driving a run or holding a task: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str, heartbeat_at: datetime | None, *, now: datetime | None = None) -> bool:
    """A process on this machine is alive if its pid is; elsewhere, if it heartbeated lately."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return psutil.pid_exists(int(pid))
    now = now or timezone.now()
    return heartbeat_at is not None and heartbeat_at > now - timedelta(seconds=settings.BACKUP_LEASE_SECONDS)


def source_place(source: PolicySource) -> storage.Place:
    return storage.Place.resolve(target=storage.endpoint_target(source.endpoint), bucket=storage.bucket_resolve(source.bucket))


def destination_place(policy: BackupPolicy) -> storage.Place:
    return storage.Place.resolve(
        target=storage.endpoint_target(policy.destination_endpoint),
        bucket=storage.bucket_resolve(policy.destination_bucket),
    )


def destination_prefix(policy: BackupPolicy) -> str:
    prefix = policy.destination_prefix.strip()
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def key_digest(key: str) -> str:
    """Short stable id of a key for alert dedup keys (keys can be 1024 bytes)."""
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]


def alert_for(
    *, policy: BackupPolicy, severity: AlertSeverity, title: str, detail: str, dedup: str, evidence: dict, subject=None
):
    return alert_raise(
        source=ALERT_SOURCE,
        severity=severity,
        title=title[:200],
        detail=detail,
        subject=subject,
        dedup_key=f"backups:{policy.name}:{dedup}"[:200],
        evidence=evidence,
    )


def rows_update(model, fields: list[str], rows: list[tuple]) -> None:
    """UPDATE one row per tuple (pk, value, ...) with one executemany.

    Django's bulk_update builds a CASE expression per field and row; at tens of thousands of
    rows that costs more CPU than the copies it records, and the GIL it holds slows the copying
    threads too. This sends one parametrized statement, values prepared by the fields.
    """
    if not rows:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(c.column)} = %s" for c in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608 - names from the model, values bound
    params = [
        [column.get_db_prep_save(value, connection) for column, value in zip(columns, row[1:], strict=True)] + [row[0]]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


_ADAPTED_TYPES = {"DateTimeField", "DateField", "JSONField", "DecimalField", "UUIDField"}


def rows_insert(model, rows: list[dict]) -> None:
    """INSERT rows given as {attname: value} (other fields take their defaults) with one
    executemany. bulk_create compiles every value of every row through the ORM, which made the
    first sweep of a large source several times slower than its listing."""
    if not rows:
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults = {f.attname: f.get_default() for f in fields}
    adapt = [f.get_internal_type() in _ADAPTED_TYPES for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608 - names from the model, values bound
    db = connections[DEFAULT_DB_ALIAS]  # the object itself: the proxy costs a lookup per value
    params = []
    for row in rows:
        values = []
        for field, needs_adapting in zip(fields, adapt, strict=True):
            value = row.get(field.attname, defaults[field.attname])
            values.append(field.get_db_prep_save(value, db) if needs_adapting and value is not None else value)
        params.append(values)
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
