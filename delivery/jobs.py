"""RQ entry points of delivery: thin, by id (enqueued through pipeline.queues)."""

import logging

from delivery.downloads import download_prepare_run

logger = logging.getLogger(__name__)


def download_prepare(rendition_id: int) -> str | None:
    return download_prepare_run(rendition_id=rendition_id)


def download_failed(job, connection, exc_type, exc_value, traceback) -> None:
    # Nothing to undo: no file was written. Asking for the download again queues it again.
    logger.error("preparing download %s failed: %s", job.id, exc_value)
