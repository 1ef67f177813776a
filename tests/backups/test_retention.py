"""Retention by schedule: restic's documented `forget --keep-*` selection on fixed calendars,
the dry run (what goes and why), and never below a lock or a legal hold."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command

from backups import forget
from backups.models import ObjectVersion
from backups.services import retention
from tests.backups.conftest import run_policy
from tests.backups.factories import ObjectVersionFactory, PolicySourceFactory


def _at(day: date, hour: int = 11) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_restic_documented_example_keep_daily_4_of_twelve_sundays():
    # doc/060_forget.rst: one backup every Sunday for 12 weeks; `forget --keep-daily 4` keeps
    # the last four Sundays and removes the other eight.
    sundays = [_at(date(2019, 9, 1) + timedelta(weeks=n)) for n in range(12)]
    kept = forget.select(list(enumerate(sundays)), forget.Keep(daily=4))
    assert sorted(kept) == [8, 9, 10, 11]
    assert [sundays[i].date().isoformat() for i in sorted(kept)] == ["2019-10-27", "2019-11-03", "2019-11-10", "2019-11-17"]
    assert all(reasons == ["daily snapshot"] for reasons in kept.values())


def test_restic_documented_daily_weekly_monthly_yearly_selection_on_a_daily_calendar():
    # doc/060_forget.rst: daily backups, `--keep-daily 7 --keep-weekly 5 --keep-monthly 12
    # --keep-yearly 75` keeps the last 7 days, 4 more last-days-of-the-week (the dailies hold one),
    # 11 or 12 last-days-of-the-month, and the last day of each year; with fewer years than
    # counts, the oldest snapshot is kept too ("oldest yearly snapshot").
    first, last = date(2016, 1, 1), date(2019, 11, 17)  # the last day is a Sunday
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    kept = forget.select([(d, _at(d)) for d in days], forget.Keep(daily=7, weekly=5, monthly=12, yearly=75))

    dailies = {last - timedelta(days=n) for n in range(7)}
    weeklies = {date(2019, 11, 10), date(2019, 11, 3), date(2019, 10, 27), date(2019, 10, 20)}
    monthlies = {date(2019, m + 1, 1) - timedelta(days=1) for m in range(1, 11)} | {date(2018, 12, 31)}
    yearlies = {date(2017, 12, 31), date(2016, 12, 31)}
    assert set(kept) == dailies | weeklies | monthlies | yearlies | {first}
    assert len(kept) == 7 + 4 + 11 + 2 + 1
    assert kept[first] == ["oldest yearly snapshot"]
    assert kept[last] == ["daily snapshot", "weekly snapshot", "monthly snapshot", "yearly snapshot"]
    assert kept[date(2018, 12, 31)] == ["monthly snapshot", "yearly snapshot"]


def test_keep_last_and_hourly_and_an_empty_schedule():
    times = [(n, datetime(2026, 3, 1, 10, tzinfo=UTC) + timedelta(minutes=20 * n)) for n in range(9)]  # 10:00..12:40
    kept = forget.select(times, forget.Keep(last=2, hourly=2))
    # Both hourly counts are used by 12:40 and 11:40: no count is left for the oldest.
    assert kept == {8: ["last snapshot", "hourly snapshot"], 7: ["last snapshot"], 5: ["hourly snapshot"]}
    # With counts left at the oldest snapshot, it is kept too.
    assert forget.select(times, forget.Keep(hourly=4))[0] == ["oldest hourly snapshot"]
    assert set(forget.select(times, forget.Keep())) == set(range(9))


@pytest.fixture
def history(db, tag):
    """One key with a version a day for ten days (the last current), the policy keeping 3 dailies."""
    source = PolicySourceFactory(prefix=f"uploads/t{tag}/", policy__keep_daily=3)
    now = datetime.now(tz=UTC)
    versions = []
    for n in range(10):
        seen = now - timedelta(days=9 - n)
        versions.append(
            ObjectVersionFactory(
                source=source, key=f"uploads/t{tag}/a.bin", protected=True, is_current=(n == 9),
                first_seen_at=seen, superseded_at=None if n == 9 else seen + timedelta(days=1),
            )
        )  # fmt: skip
    return source.policy, versions


def test_the_dry_run_lists_what_goes_and_why_and_never_goes_below_a_lock_or_a_hold(history, capsys):
    policy, versions = history
    now = datetime.now(tz=UTC)
    ObjectVersion.objects.filter(pk=versions[0].pk).update(legal_hold=True)
    ObjectVersion.objects.filter(pk=versions[1].pk).update(locked_until=now + timedelta(days=2))
    ObjectVersion.objects.filter(pk=versions[2].pk).update(locked_until=now - timedelta(days=2))  # lock passed

    plan = {v.version_id: v for v in retention.retention_plan(policy=policy, now=now)}

    assert len(plan) == 10
    assert plan[versions[9].pk].reasons == ["current version", "daily snapshot"]
    assert plan[versions[8].pk].reasons == ["daily snapshot"] and plan[versions[7].pk].keep
    assert plan[versions[0].pk].reasons == ["legal hold"]
    assert plan[versions[1].pk].keep and plan[versions[1].pk].reasons[0].startswith("copy locked until")
    assert {pk for pk, v in plan.items() if not v.keep} == {v.pk for v in versions[2:7]}

    call_command("backup_forget", "--policy", policy.name)
    out = capsys.readouterr().out
    assert "keep-daily 3" in out and "5 version(s) would be forgotten, 5 kept" in out
    assert "legal hold" in out and "no rule keeps it" in out
    assert ObjectVersion.objects.filter(source__policy=policy).count() == 10  # a dry run changes nothing


def test_a_run_forgets_exactly_what_the_dry_run_listed(history, s3, settings):
    policy, versions = history
    policy.destination_bucket = settings.S3_BUCKET_BACKUP
    policy.save(update_fields=["destination_bucket"])
    ObjectVersion.objects.filter(source__policy=policy).update(backup_bucket=settings.S3_BUCKET_BACKUP)
    for version in versions:  # the copies exist, so retention deletes real objects
        s3.put_object(Bucket=settings.S3_BUCKET_BACKUP, Key=version.backup_key, Body=b"copy")
    going = {v.version_id for v in retention.retention_plan(policy=policy) if not v.keep}

    run = run_policy(policy, verify="none")

    assert run.versions_pruned == len(going) == 7
    assert set(ObjectVersion.objects.filter(source__policy=policy).values_list("pk", flat=True)) == {
        v.pk for v in versions[7:]
    }
    left = s3.list_objects_v2(Bucket=settings.S3_BUCKET_BACKUP, Prefix=policy.destination_prefix).get("Contents", [])
    assert sorted(o["Key"] for o in left) == sorted(v.backup_key for v in versions[7:])
