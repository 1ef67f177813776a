"""Legal holds from the event log: an asset deleted under a legal hold says so in its deletion
events, and backups hold the ledger versions under those prefixes, which retention then keeps."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from backups.models import ObjectVersion
from backups.services import intake
from backups.services.retention import retention_plan
from core.models import Event
from core.roles import Role
from core.services import event_record
from tests.backups.factories import ObjectVersionFactory


@pytest.mark.django_db
def test_deleting_an_asset_under_a_legal_hold_says_so_in_every_deletion_event(make_user, s3):
    from delivery.services import asset_delete, asset_details_update
    from tests.factories import AssetFactory

    owner = make_user("holder", role=Role.PUBLISHER)
    held, free = AssetFactory(publisher=owner), AssetFactory(publisher=owner)
    asset_details_update(asset=held, actor=owner, legal_hold=True)
    held_id, free_id = held.pk, free.pk
    asset_delete(asset=held, actor=owner)
    asset_delete(asset=free, actor=owner)
    deletions = Event.objects.filter(type__in=["asset.deleted", "asset.media_deleted", "asset.source_deleted"])
    assert {e.payload.get("legal_hold") for e in deletions.filter(subject_id=str(held_id))} == {True}
    assert {e.payload.get("legal_hold") for e in deletions.filter(subject_id=str(free_id))} == {None}


@pytest.mark.django_db
def test_a_held_deletion_holds_the_ledger_versions_and_retention_keeps_them(make_policy, tag):
    policy = make_policy(sources=("media",), retention_days=30)
    source = policy.sources.get()
    old = timezone.now() - timedelta(days=40)
    held = ObjectVersionFactory(source=source, key=f"{source.prefix}held/a.mp4", is_current=False, deleted_at=old)
    free = ObjectVersionFactory(source=source, key=f"{source.prefix}free/a.mp4", is_current=False, deleted_at=old)
    intake.events_follow()  # start after what is already in the log
    event_record(type="asset.deleted", subject=("pipeline.asset", 1),
                 payload={"bucket": settings.S3_BUCKET_MEDIA, "prefix": f"{source.prefix}held/", "legal_hold": True})
    event_record(type="asset.deleted", subject=("pipeline.asset", 2),
                 payload={"bucket": settings.S3_BUCKET_MEDIA, "prefix": f"{source.prefix}free/"})
    intake.events_follow()
    assert ObjectVersion.objects.get(pk=held.pk).legal_hold and not ObjectVersion.objects.get(pk=free.pk).legal_hold
    verdicts = {v.version_id: v for v in retention_plan(policy=policy)}
    assert verdicts[held.pk].keep and "legal hold" in verdicts[held.pk].reasons
    assert not verdicts[free.pk].keep
