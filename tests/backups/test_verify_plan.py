"""Verification plans: sampled verification still reaches every copy within N days, oldest
first."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.models import ObjectVersion, PolicySource, VerifyMode
from backups.services.verify import verify_candidates
from tests.backups.conftest import run_policy
from tests.backups.factories import ObjectVersionFactory

pytestmark = pytest.mark.django_db


def test_sampling_reaches_every_copy_within_the_window(make_policy):
    policy = make_policy(verify_mode=VerifyMode.SAMPLED, verify_within_days=2, interval_minutes=12 * 60)
    source = PolicySource.objects.get(policy=policy)
    start = timezone.now()
    versions = [
        ObjectVersionFactory(source=source, protected=True, verified_at=start - timedelta(hours=i))
        for i in range(10)
    ]
    window = timedelta(days=2)
    per_run = []
    for run_number in range(1, 13):
        now = start + timedelta(hours=12 * run_number)
        chosen = verify_candidates(policy=policy, mode=VerifyMode.SAMPLED, now=now)
        per_run.append(len(chosen))
        oldest_first = list(
            ObjectVersion.objects.filter(pk__in=chosen).order_by("verified_at").values_list("pk", flat=True)
        )
        assert set(chosen) == set(oldest_first)
        ObjectVersion.objects.filter(pk__in=chosen).update(verified_at=now)
        ages = [now - v.verified_at for v in ObjectVersion.objects.filter(pk__in=[v.pk for v in versions])]
        assert max(ages) <= window, (run_number, max(ages))
    # A sample, not everything: 10 copies over 4 runs per window.
    assert max(per_run[2:]) <= 4 and min(per_run) >= 3


def test_a_sampled_run_reads_the_oldest_verified_copies(make_policy, put, tag):
    policy = make_policy(verify_mode=VerifyMode.SAMPLED, verify_within_days=7, interval_minutes=60)
    for i in range(6):
        put(f"uploads/t{tag}/{i}", os.urandom(500))
    run_policy(policy)
    stale = list(ObjectVersion.objects.filter(source__policy=policy).order_by("pk")[:2])
    long_ago = timezone.now() - timedelta(days=8)
    ObjectVersion.objects.filter(pk__in=[v.pk for v in stale]).update(verified_at=long_ago)

    run = run_policy(policy)

    assert run.objects_verified == 2
    for version in stale:
        version.refresh_from_db()
        assert version.verified_at > long_ago + timedelta(days=7)
