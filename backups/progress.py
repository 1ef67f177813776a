"""Live progress of runs and restores: snapshots pushed to a channel-layer group.

Counters are written to the database in batches by the thread driving the run; after a batch
the fresh snapshot goes to the run's group, at most every BACKUP_PROGRESS_INTERVAL_MS (and
always on a phase change), so a page shows progress without polling.
"""

import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

KINDS = ("run", "restore")


def group_name(kind: str, pk: int) -> str:
    return f"backups-{kind}-{pk}"


def publish_rollback_unsafe(kind: str, pk: int, snapshot: dict) -> None:
    """Send now, whatever becomes of the caller's transaction."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(kind, pk), {"type": "backup.progress", "snapshot": snapshot})
    except Exception:  # noqa: BLE001 - a lost progress message must never fail a backup
        logger.warning("progress message for %s %s not sent", kind, pk, exc_info=True)


class Publisher:
    """Rate-limited snapshots of one run or restore (the first and forced ones always go)."""

    def __init__(self, kind: str, pk: int) -> None:
        self.kind, self.pk = kind, pk
        self.interval_s = settings.BACKUP_PROGRESS_INTERVAL_MS / 1000
        self._last = float("-inf")

    def maybe(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        from backups import selectors

        snapshot = selectors.progress_snapshot(kind=self.kind, pk=self.pk)
        if snapshot is not None:
            if transaction.get_connection().in_atomic_block:
                transaction.on_commit(lambda: publish_rollback_unsafe(self.kind, self.pk, snapshot))
            else:
                publish_rollback_unsafe(self.kind, self.pk, snapshot)
