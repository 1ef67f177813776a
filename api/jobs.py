"""RQ entry points of the API app: thin, by id (enqueued through pipeline.queues)."""

from api.imports import url_import_end, url_import_run
from api.models import ImportState, UrlImport


def url_import(import_id: int) -> None:
    url_import_run(import_id=import_id)


def url_import_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """A crash (not a refusal, which ends the import itself): record why, so it is not stuck."""
    found = UrlImport.objects.filter(pk=job.args[0]).first()
    if found is not None and found.state in (ImportState.QUEUED, ImportState.FETCHING):
        url_import_end(found, ImportState.FAILED, f"the import failed: {exc_value}")
