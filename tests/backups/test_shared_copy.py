"""One backup copy shared by several ledger versions (identical bytes are stored once): its
loss is one finding naming every version, one alert, one repair."""

import os

import pytest

from backups.models import Failure, FailureCause, ObjectVersion, Resolution, RunState, VersionState
from core.models import Alert, AlertSeverity, AlertState
from tests.backups.conftest import OFFSITE_BUCKET, run_policy

pytestmark = pytest.mark.django_db

SHARING = 5


@pytest.fixture
def shared(make_policy, put, tag, offsite):
    """Five keys with the same bytes, backed up offsite: one copy, five ledger versions."""
    policy = make_policy()
    data = os.urandom(30_000)
    keys = [put(f"uploads/t{tag}/copy-{n}.bin", data) for n in range(SHARING)]
    assert run_policy(policy).state == RunState.SUCCEEDED
    versions = list(ObjectVersion.objects.filter(source__policy=policy).order_by("key"))
    assert len({v.backup_key for v in versions}) == 1 and len(versions) == SHARING
    offsite.delete_object(Bucket=OFFSITE_BUCKET, Key=versions[0].backup_key)
    return policy, keys, data, versions


def test_a_deleted_copy_shared_by_five_versions_is_one_finding_with_five_references(shared, offsite, settings):
    policy, keys, data, versions = shared
    settings.BACKUP_VERIFY_CONCURRENCY = 1  # one reader: the versions are read one after another

    run = run_policy(policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert failure.cause == FailureCause.BACKUP_MISSING and failure.resolution == Resolution.REPAIRED
    assert sorted(ref["key"] for ref in failure.references) == sorted(keys)
    assert {ref["version"] for ref in failure.references} == {v.pk for v in versions}
    assert any(step["step"] == "Shared copy" and f"{SHARING} ledger versions" in step["finding"] for step in failure.chain)
    alerts = Alert.objects.filter(source="backups", evidence__run=run.pk)
    assert alerts.count() == 1 and alerts.get().state == AlertState.RESOLVED
    assert run.state == RunState.SUCCEEDED and run.objects_failed == 1
    assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=versions[0].backup_key)["Body"].read() == data
    assert set(ObjectVersion.objects.filter(source__policy=policy).values_list("state", flat=True)) == {VersionState.PROTECTED}


def test_a_shared_copy_with_no_origin_left_is_one_critical_finding_and_every_version_is_lost(shared, s3, settings):
    policy, keys, data, versions = shared
    for key in keys:
        s3.delete_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)
    run_policy(policy, verify="none")  # the deletions are recorded: only the backup held them

    run = run_policy(policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert failure.resolution == Resolution.ALERTED and len(failure.references) == SHARING
    alert = Alert.objects.get(pk=failure.alert_id)
    assert alert.severity == AlertSeverity.CRITICAL and alert.occurrences == 1
    assert Alert.objects.filter(source="backups", title__startswith="No good copy remains").count() == 1
    assert set(ObjectVersion.objects.filter(source__policy=policy).values_list("state", flat=True)) == {VersionState.LOST}


def test_the_run_page_and_the_failures_csv_name_every_reference(shared, make_user, settings):
    from django.test import Client
    from django.urls import reverse

    from core.roles import Role

    policy, keys, _, _ = shared
    run = run_policy(policy, verify="full")
    client = Client()
    client.force_login(make_user("opsref", role=Role.OPERATIONS))

    page = client.get(reverse("backups:run_detail", args=[run.pk])).content.decode()
    csv = b"".join(client.get(reverse("backups:run_failures_csv", args=[run.pk])).streaming_content).decode()

    assert f"One backup copy shared by {SHARING} ledger versions" in page
    assert all(key in page and key in csv for key in keys)
