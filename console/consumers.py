"""The console's live sockets: thin. connect() authenticates and authorizes (operations staff
only, close code 4403 for anyone else), joins a group and sends what the page needs first;
then every `job.message` the pipeline publishes is forwarded.

- /ws/ops/jobs/: the "jobs" group (every job's state changes). The page asks for its visible
  rows (and any new job ids it heard of) with {"action": "refresh", "ids": [...], "query": "..."}
  and gets them back rendered with the page's own row template, each with the sequence number it
  is current to, plus the counts per state under the page's filters.
- /ws/ops/jobs/<id>/: one job's group; a snapshot (pipeline.selectors.job_snapshot) then its
  messages, the same protocol as the studio's grid.
"""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import QueryDict

from console import rows as rows_html
from console import selectors
from console.forms import JobFilterForm
from pipeline import progress
from pipeline.models import EncodeJob
from pipeline.selectors import job_snapshot

CLOSE_FORBIDDEN = 4403  # not signed in, or not operations staff
CLOSE_NOT_FOUND = 4404  # no such job
REFRESH_MIN_INTERVAL_S = 1.0
MAX_IDS = 200


def _is_operator(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.has_perm("core.access_operations"))


def _refresh(job_ids: list[int], query: str) -> dict:
    form = JobFilterForm(QueryDict(query), profiles=selectors.profiles_choices())
    form.is_valid()
    filters = form.filters()
    rows = selectors.job_rows_matching(filters, job_ids=job_ids)
    counts = selectors.job_state_counts(filters)
    return {
        "type": "rows",
        "asked": job_ids,
        "rows": [
            {"id": job.pk, "seq": job.seq, "state": job.state,
             "html": rows_html.job_row(job)}
            for job in rows
        ],
        "counts": {"total": counts["total"], "active": counts["active"], **{s: n for s, _, n in counts["states"]}},
    }


class _OperatorConsumer(AsyncJsonWebsocketConsumer):
    async def authorized(self) -> bool:
        # Accept first so that a refusal carries its reason as a close code the page can read.
        await self.accept()
        if not await database_sync_to_async(_is_operator)(self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        return True


class JobsConsumer(_OperatorConsumer):
    joined = False
    last_refresh = 0.0

    async def connect(self) -> None:
        if not await self.authorized():
            return
        await self.channel_layer.group_add(progress.JOBS_GROUP, self.channel_name)
        self.joined = True
        await self.send_json({"type": "ready"})

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(progress.JOBS_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        if not self.joined or not isinstance(content, dict) or content.get("action") != "refresh":
            return
        ids = content.get("ids")
        query = content.get("query")
        if not isinstance(ids, list) or not isinstance(query, str) or len(query) > 2000:
            return
        job_ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)][:MAX_IDS]
        wait = self.last_refresh + REFRESH_MIN_INTERVAL_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.last_refresh = time.monotonic()
        await self.send_json(await database_sync_to_async(_refresh)(job_ids, query))

    async def job_message(self, event: dict) -> None:
        if event.get("kind") == "job":
            await self.send_json({"type": "message", "job": event.get("job"), "seq": event.get("seq", 0),
                                  "state": event.get("state"), "reason": event.get("reason", "")})


def _job_exists(job_id: int) -> bool:
    return EncodeJob.objects.filter(pk=job_id).exists()


class JobConsumer(_OperatorConsumer):
    job_id: int | None = None
    snapshot_seq = 0
    last_snapshot = 0.0

    async def connect(self) -> None:
        if not await self.authorized():
            return
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        if not await database_sync_to_async(_job_exists)(job_id):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.job_id = job_id
        # Join before the snapshot: a change in between arrives as a message with a higher seq.
        await self.channel_layer.group_add(progress.job_group(job_id), self.channel_name)
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        if self.job_id is not None:
            await self.channel_layer.group_discard(progress.job_group(self.job_id), self.channel_name)

    async def send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(job_snapshot)(job_id=self.job_id)
        self.snapshot_seq = snapshot["seq"]
        self.last_snapshot = time.monotonic()
        await self.send_json({"type": "snapshot", **snapshot})

    async def receive_json(self, content, **kwargs) -> None:
        if self.job_id is None or not isinstance(content, dict) or content.get("action") != "snapshot":
            return
        if time.monotonic() - self.last_snapshot >= REFRESH_MIN_INTERVAL_S:
            await self.send_snapshot()

    async def job_message(self, event: dict) -> None:
        if event.get("seq", 0) <= self.snapshot_seq:
            return
        await self.send_json({**event, "type": "message"})
