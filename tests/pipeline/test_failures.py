"""pipeline.failures: every failure is permanent, transient or a defect, and each step fails
its job at once for the first and the last, and leaves only the transient ones to RQ."""

from unittest import mock

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from django.db import IntegrityError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.timeouts import JobTimeoutException

from core.models import Event
from pipeline import ffmpeg, jobs
from pipeline.failures import RETRY_RULES, FailureClass, classify
from pipeline.models import EncodeJob, JobState, UnitState
from tests.factories import EncodeJobFactory, UnitFactory


def _s3_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ffmpeg.PermanentMediaError("not a media file"), FailureClass.PERMANENT),
        (ffmpeg.TransientMediaError("the storage server returned a 5xx error"), FailureClass.TRANSIENT),
        (ffmpeg.CommandDefectError("ffmpeg rejected the command"), FailureClass.DEFECT),
        (_s3_error("SlowDown", 503), FailureClass.TRANSIENT),
        (_s3_error("InternalError", 500), FailureClass.TRANSIENT),
        (_s3_error("NoSuchKey", 404), FailureClass.PERMANENT),
        (_s3_error("InvalidArgument", 400), FailureClass.DEFECT),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), FailureClass.TRANSIENT),
        (OperationalError("database is locked"), FailureClass.TRANSIENT),
        (RedisConnectionError("Connection refused"), FailureClass.TRANSIENT),
        (JobTimeoutException("Task exceeded maximum timeout value"), FailureClass.TRANSIENT),
        (OSError(28, "No space left on device"), FailureClass.TRANSIENT),
        (KeyError("video"), FailureClass.DEFECT),
        (TypeError("unsupported operand"), FailureClass.DEFECT),
        (IntegrityError("UNIQUE constraint failed"), FailureClass.DEFECT),
    ],
)
def test_each_failure_has_one_class(exc, kind):
    failure = classify(exc)
    assert failure.kind == kind
    assert failure.retried == (kind == FailureClass.TRANSIENT)
    assert failure.reason and "Traceback" not in failure.reason


def test_a_defect_says_it_is_not_the_files_fault_and_keeps_the_traceback_for_operations():
    try:
        {}["video"]
    except KeyError as exc:
        failure = classify(exc)
    assert "not a problem with the file" in failure.reason and "KeyError" in failure.reason
    assert "Traceback" in failure.detail


def test_every_class_has_a_retry_rule():
    assert set(RETRY_RULES) == set(FailureClass)


@pytest.mark.django_db
def test_a_defect_in_a_step_fails_its_job_at_once():
    job = EncodeJobFactory(state=JobState.PACKAGING, asset__probe={"video": {}})
    with mock.patch("pipeline.steps.packaging.video_info_from_json", side_effect=KeyError("layout")):
        jobs.package_job(job.pk)  # returns: nothing for RQ to retry
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.failure_reason.startswith("an internal error stopped this job (KeyError)")
    assert Event.objects.get(type="job.failed", subject_id=str(job.pk)).payload["failure_class"] == "defect"
    detail = Event.objects.get(type="job.failure_detail", subject_id=str(job.pk))
    assert detail.owner is None and "KeyError" in detail.payload["detail"]


@pytest.mark.django_db
def test_a_transient_failure_in_a_step_is_left_to_rqs_retry():
    job = EncodeJobFactory(state=JobState.PACKAGING, asset__probe={"video": {}})
    with (
        mock.patch("pipeline.steps.packaging.video_info_from_json", side_effect=_s3_error("SlowDown", 503)),
        pytest.raises(ClientError),
    ):
        jobs.package_job(job.pk)
    assert EncodeJob.objects.get(pk=job.pk).state == JobState.PACKAGING


@pytest.mark.django_db
def test_a_defect_in_an_encode_unit_fails_its_job_once_not_after_retries():
    unit = UnitFactory(state=UnitState.RUNNING, job__state=JobState.ENCODING)
    with mock.patch("pipeline.steps.units.unit_start", side_effect=TypeError("bad plan row")):
        jobs.encode_unit(unit.pk)  # returns: nothing for RQ to retry
    job = EncodeJob.objects.get(pk=unit.job_id)
    assert job.state == JobState.FAILED and "internal error stopped this job (TypeError)" in job.failure_reason
    assert Event.objects.get(type="job.failed", subject_id=str(job.pk)).payload["failure_class"] == "defect"
    unit.refresh_from_db()
    assert unit.state == UnitState.FAILED


def test_a_transfer_cut_short_is_transient():
    from boto3.exceptions import S3UploadFailedError
    from urllib3.exceptions import ProtocolError

    assert classify(S3UploadFailedError("Failed to upload: SlowDown")).kind == FailureClass.TRANSIENT
    assert classify(ProtocolError("Connection aborted.")).kind == FailureClass.TRANSIENT
    assert classify(ConnectionResetError(104, "Connection reset by peer")).kind == FailureClass.TRANSIENT
