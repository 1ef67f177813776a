"""Every failure of a pipeline step is one of three classes, and only one of them is retried.

* **permanent**: the input is bad (not a video, no frame decodes, over a limit). Retrying
  cannot help: the job fails at once with a sentence a publisher can act on.
* **transient**: the infrastructure failed (S3 5xx or a dropped connection, Redis or the
  database away, a full disk, a killed ffmpeg, a timeout). The same step is retried by RQ
  (``pipeline.queues``: 3 more attempts after 5, 30 and 120 s); only the last failure fails
  the job.
* **defect**: our own code is wrong (an exception nobody expected: ``KeyError``,
  ``TypeError``, an ffmpeg command it rejected). Retrying runs the same bug again, so the job
  fails at once with a sentence that says so, and the traceback goes to the event log for
  operations staff.

:func:`classify` decides; :func:`step_failed` is what every step's wrapper calls with what it
caught. Reasons shown to people never carry raw ffmpeg text: that goes to ``detail`` (the
event log, the worker log, a unit's ``log_tail``).
"""

from __future__ import annotations

import errno
import logging
import traceback
from dataclasses import dataclass
from enum import StrEnum
from http.client import HTTPException

from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import AbandonedJobError, ShutDownImminentException
from rq.timeouts import JobTimeoutException
from urllib3.exceptions import HTTPError

from pipeline import ffmpeg
from pipeline.services.jobs import job_fail

logger = logging.getLogger(__name__)


class FailureClass(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    DEFECT = "defect"


# The retry rule of each class, as docs/reliability.md and the operations page state it.
RETRY_RULES = {
    FailureClass.PERMANENT: "never retried: the job fails at once with the reason",
    FailureClass.TRANSIENT: "retried by RQ 3 more times after 5, 30 and 120 s; the job fails only after the last",
    FailureClass.DEFECT: "never retried: the job fails at once and the traceback goes to the event log",
}

_S3_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "Throttling",
    "ThrottlingException", "503", "500", "502", "504", "AccessDenied", "403", "ExpiredToken",
}  # fmt: skip
_S3_MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}
DEFECT_REASON = (
    "an internal error stopped this job ({name}); it is not a problem with the file. Operations staff have "
    "the details; retry the job once it is fixed"
)


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureClass
    reason: str  # one sentence for the asset page, the CLI and the event log
    detail: str = ""  # for operations: ffmpeg's last lines, a traceback

    @property
    def retried(self) -> bool:
        return self.kind == FailureClass.TRANSIENT


def _s3_failure(exc: ClientError) -> Failure:
    error = exc.response.get("Error", {}) or {}
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if code in _S3_TRANSIENT_CODES or status >= 500:
        return Failure(FailureClass.TRANSIENT, f"the storage service failed ({code or status}); retrying", str(exc))
    if code in _S3_MISSING_CODES:
        return Failure(
            FailureClass.PERMANENT,
            "a stored file this job needs is gone from storage (it was deleted or moved); upload the video again",
            str(exc),
        )
    return Failure(FailureClass.DEFECT, DEFECT_REASON.format(name=f"storage refused a request: {code}"), str(exc))


def classify(exc: BaseException) -> Failure:
    """The class of a failure, with the reason to show."""
    if isinstance(exc, ffmpeg.MediaError):
        detail = "\n".join(part for part in (exc.command, exc.stderr_tail) if part)
        if isinstance(exc, ffmpeg.PermanentMediaError):
            if isinstance(exc, ffmpeg.CommandDefectError):
                return Failure(FailureClass.DEFECT, DEFECT_REASON.format(name=exc.reason), detail)
            return Failure(FailureClass.PERMANENT, exc.reason, detail)
        return Failure(FailureClass.TRANSIENT, exc.reason, detail)
    if isinstance(exc, ClientError):
        return _s3_failure(exc)
    if isinstance(exc, BotoCoreError | S3TransferFailedError | S3UploadFailedError | HTTPException | HTTPError):
        # Endpoint unreachable, connection closed or cut short, read timeout, a transfer
        # manager's upload that failed after its own retries.
        return Failure(FailureClass.TRANSIENT, "the storage service could not be reached; retrying", str(exc))
    if isinstance(exc, OperationalError | InterfaceError | RedisConnectionError | RedisTimeoutError):
        return Failure(FailureClass.TRANSIENT, "the database or Redis could not be reached; retrying", str(exc))
    if isinstance(exc, JobTimeoutException):
        return Failure(FailureClass.TRANSIENT, "the step ran past its time limit; retrying", str(exc))
    if isinstance(exc, AbandonedJobError | ShutDownImminentException):
        return Failure(FailureClass.TRANSIENT, "the worker running this step stopped; retrying", str(exc))
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        reason = (
            "the worker's disk is full; retrying on a worker with space" if exc.errno == errno.ENOSPC
            else f"an input/output error on the worker ({exc.strerror or type(exc).__name__}); retrying"
        )  # fmt: skip
        return Failure(FailureClass.TRANSIENT, reason, str(exc))
    # Anything else (IntegrityError, KeyError, TypeError, ...) is our code's fault.
    name = type(exc).__name__
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    return Failure(FailureClass.DEFECT, DEFECT_REASON.format(name=name), detail)


def step_failed(exc: BaseException, *, step: str, job_id: int) -> Failure:
    """What a step's wrapper calls with what it caught: permanent and defect failures end the
    job now (the reason on the job, the detail in the event log); the caller re-raises a
    transient one for RQ to retry."""
    failure = classify(exc)
    if failure.retried:
        logger.warning("%s (job %s) failed, to be retried: %s", step, job_id, failure.reason)
        return failure
    log = logger.error if failure.kind == FailureClass.DEFECT else logger.info
    log("%s (job %s) failed for good (%s): %s\n%s", step, job_id, failure.kind, failure.reason, failure.detail)
    job_fail(job_id=job_id, reason=failure.reason, failure_class=failure.kind, detail=failure.detail)
    return failure
