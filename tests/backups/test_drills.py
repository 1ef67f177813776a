"""Restore drills on real S3, ffmpeg and a real backup worker: the scheduler's tick queues a
drill, the worker restores a sample of assets to a scratch prefix, verifies them, plays the
restored package and reports the time to restore; the page shows the last drill; a damaged
backup makes the drill fail loudly."""

import random

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from backups import jobs
from backups.models import BackupPolicy, DrillState, ObjectVersion, RestoreDrill, RunState
from core.models import Alert, AlertSeverity
from core.roles import Role
from tests.backups.conftest import OFFSITE_BUCKET, run_policy
from tests.backups.factories import PolicySourceFactory
from tests.backups.test_published import _package
from tests.conftest import wait_until


@pytest.fixture
def packaged(make_policy, s3, tmp_path):
    """A policy holding one asset's published HLS package (made by ffmpeg): (policy, asset id)."""
    asset = random.randint(10**8, 10**9)  # noqa: S311 - a test's unique id
    policy = make_policy(sources=())
    PolicySourceFactory(policy=policy, bucket="${S3_BUCKET_MEDIA}", prefix=f"published/{asset}/")
    _package(tmp_path / "pkg")
    for path in sorted((tmp_path / "pkg").iterdir()):
        s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"published/{asset}/7/{path.name}", Body=path.read_bytes())
    assert run_policy(policy).state == RunState.SUCCEEDED
    return policy, asset


@pytest.mark.django_db(transaction=True)
def test_the_tick_queues_a_drill_that_a_backup_worker_restores_verifies_and_plays(
    packaged, rq_worker_process, make_user, s3
):
    policy, asset = packaged
    BackupPolicy.objects.exclude(pk=policy.pk).update(enabled=False)

    jobs.tick()
    drill = RestoreDrill.objects.get(policy=policy)
    assert drill.results == [{"asset": asset}]
    jobs.tick()  # not due again: one drill
    assert RestoreDrill.objects.filter(policy=policy).count() == 1
    rq_worker_process(jobs.QUEUE)
    wait_until(lambda: RestoreDrill.objects.get(pk=drill.pk).finished_at, timeout=120, message="the drill")

    drill.refresh_from_db()
    assert drill.state == DrillState.SUCCEEDED, drill.error
    [result] = drill.results
    assert result["plays"] and result["frames"] == 20 and result["master"] == f"published/{asset}/7/master.m3u8"
    assert result["objects"] == 5 and drill.seconds > 0 and drill.bytes_restored > 0
    scratch = s3.list_objects_v2(Bucket=settings.S3_BUCKET_MEDIA, Prefix=f"drills/{drill.pk}/")
    assert scratch.get("KeyCount", 0) == 0  # the scratch copies are gone
    client = Client()
    client.force_login(make_user("opsdrill", role=Role.OPERATIONS))
    page = client.get(reverse("backups:policy_detail", args=[policy.pk])).content.decode()
    assert "Restored, verified and playable" in page and "yes, 20 frames" in page
    assert "Restored, verified and playable" in client.get(reverse("backups:home")).content.decode()


@pytest.mark.django_db
def test_a_drill_over_a_damaged_copy_fails_with_a_critical_alert(packaged, offsite):
    policy, asset = packaged
    segment = ObjectVersion.objects.get(source__policy=policy, key=f"published/{asset}/7/h264-240p0.m4s")
    offsite.put_object(Bucket=OFFSITE_BUCKET, Key=segment.backup_key, Body=b"rotten")

    with pytest.raises(CommandError, match="failed to restore or verify"):
        call_command("backup_drill", "--policy", policy.name)

    drill = RestoreDrill.objects.get(policy=policy)
    assert drill.state == DrillState.FAILED and not drill.results[0]["plays"]
    alert = Alert.objects.get(dedup_key=f"backups:{policy.name}:drill")
    assert alert.severity == AlertSeverity.CRITICAL and str(asset) in alert.detail


@pytest.mark.django_db
def test_a_policy_without_packages_has_nothing_to_drill(make_policy):
    with pytest.raises(CommandError, match="holds no published package yet"):
        call_command("backup_drill", "--policy", make_policy().name)
