"""The retry schedule and subscriptions: pure functions, checked over their whole range."""

from datetime import timedelta

import pytest
from django.utils import timezone

from webhooks import event_types
from webhooks.services import JITTER, retry_delay, retry_next

DAY = timedelta(hours=24)


def test_delays_double_from_thirty_seconds_and_cap_at_an_hour():
    nominal = [retry_delay(n, base=30, cap=3600, jitter=0) for n in range(1, 12)]
    assert nominal[:8] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert nominal[8:] == [3600] * 3
    assert retry_delay(500, base=30, cap=3600, jitter=0) == 3600  # no overflow on a long run


def test_jitter_stays_within_twenty_percent_and_varies():
    samples = [retry_delay(3, base=30, cap=3600) for _ in range(200)]
    assert all(120 * (1 - JITTER) <= s <= 120 * (1 + JITTER) for s in samples)
    assert len({round(s, 3) for s in samples}) > 50, "jitter must spread retries apart"


@pytest.mark.parametrize("jitter", [-JITTER, 0.0, JITTER])
def test_retries_go_on_for_at_least_a_day_then_stop(settings, jitter):
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 30
    settings.WEBHOOKS_RETRY_MAX_DELAY_SECONDS = 3600
    settings.WEBHOOKS_RETRY_WINDOW_SECONDS = 24 * 3600
    created = timezone.now()
    now, attempt, gaps = created, 1, []
    while (
        following := retry_next(created_at=created, now=now, attempt_number=attempt, jitter=jitter)
    ) is not None:
        gaps.append((following - now).total_seconds())
        now, attempt = following, attempt + 1
        assert attempt < 100, "the schedule must end"
    # The last attempt happens a day or more after the first, and no gap exceeds the capped hour.
    assert now - created >= DAY
    assert now - created < DAY + timedelta(seconds=3600 * (1 + JITTER))
    assert max(gaps) <= 3600 * (1 + JITTER)
    assert gaps[0] == pytest.approx(30 * (1 + jitter))
    assert 25 <= attempt <= 40


def test_default_subscription_gets_jobs_renditions_assets_not_units():
    default = event_types.DEFAULT
    for wanted in ["job.published", "job.failed", "rendition.ready", "rendition.playable", "asset.created"]:
        assert event_types.subscribes(default, wanted), wanted
    for unwanted in ["unit.done", "upload.completed", "alert.raised"]:
        assert not event_types.subscribes(default, unwanted), unwanted
    assert "rendition.playable" in event_types.VALUES


def test_subscriptions_match_exactly_by_prefix_or_all_but_never_webhook_events():
    assert event_types.subscribes(["job.published"], "job.published")
    assert not event_types.subscribes(["job.published"], "job.failed")
    assert not event_types.subscribes(["job.*"], "jobs.other")
    assert event_types.subscribes(["*"], "upload.completed")
    assert not event_types.subscribes(["*"], "unit.done")
    assert event_types.subscribes(["unit.*"], "unit.done")
    for pattern in (["*"], ["webhook.*"], ["webhook.ping"]):
        assert not event_types.subscribes(pattern, "webhook.ping")
