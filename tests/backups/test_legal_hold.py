"""Legal holds: an asset deleted under a legal hold tells backups through the event log, and
retention keeps the copies under the held prefixes past the policy's days."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from backups.models import LegalHold, ObjectVersion, RunTrigger
from backups.services import intake, runs
from backups.services.retention import run_prune
from core.roles import Role
from tests.backups.factories import ObjectVersionFactory


@pytest.mark.django_db
def test_deleting_an_asset_under_a_legal_hold_records_holds_for_its_prefixes(make_user, s3):
    from delivery.services import asset_delete, asset_details_update
    from tests.factories import AssetFactory

    intake.events_follow()  # start after what is already in the log
    owner = make_user("holder", role=Role.PUBLISHER)
    held, free = AssetFactory(publisher=owner), AssetFactory(publisher=owner)
    asset_details_update(asset=held, actor=owner, legal_hold=True)
    held_id, held_key = held.pk, held.source_key
    asset_delete(asset=held, actor=owner)
    asset_delete(asset=free, actor=owner)
    intake.events_follow()
    holds = set(LegalHold.objects.filter(released_at=None).values_list("bucket", "prefix"))
    assert holds == {
        (settings.S3_BUCKET_MEDIA, f"assets/{held_id}/"),
        (settings.S3_BUCKET_MEDIA, f"published/{held_id}/"),
        (settings.S3_BUCKET_INGEST, held_key),
    }


@pytest.mark.django_db
def test_retention_keeps_held_copies_and_prunes_the_rest(make_policy, tag):
    policy = make_policy(sources=("media",), retention_days=30)
    source = policy.sources.get()
    old = timezone.now() - timedelta(days=40)
    held = ObjectVersionFactory(source=source, key=f"{source.prefix}held/a.mp4", is_current=False, deleted_at=old)
    free = ObjectVersionFactory(source=source, key=f"{source.prefix}free/a.mp4", is_current=False, deleted_at=old)
    LegalHold.objects.create(bucket=settings.S3_BUCKET_MEDIA, prefix=f"{source.prefix}held/")
    LegalHold.objects.create(bucket=settings.S3_BUCKET_MEDIA, prefix=f"{source.prefix}free/", released_at=timezone.now())
    run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND)
    assert run_prune(run=run) == 1
    assert ObjectVersion.objects.filter(pk=held.pk).exists() and not ObjectVersion.objects.filter(pk=free.pk).exists()
