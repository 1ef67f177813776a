"""The `/metrics` families, built at scrape time.

Gauges come from where the truth is: the database (jobs, units, backups, violations, alerts)
and Redis (queues, workers), read with a fixed number of grouped queries and two pipelined
Redis round trips. Counters and histograms that workers measured come from the Redis hashes
core.metrics writes (that module says why not prometheus-client's multiprocess mode).
"""

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from rq import Queue
from rq.utils import utcparse
from rq.worker_registration import get_keys

from backups.models import BackupPolicy, BackupRun, Failure, ObjectVersion, VersionState
from core import metrics
from core.models import Alert
from pipeline import queues as pipeline_queues
from pipeline.models import JOB_FINAL_STATES, EncodeJob, Profile, Unit
from security.models import Violation, ViolationState
from webhooks.models import Delivery


def lane_of(queue_names: list[str]) -> str:
    """The lane a worker serves (README, "Lanes"), from the queues it listens on."""
    names = set(queue_names)
    lanes = sorted(
        {
            "media" if q in pipeline_queues.MEDIA else q if q in ("security", "backup") else "control"
            for q in names
        }
    )
    return "+".join(lanes) or "none"


def _queue_families(conn, now: datetime) -> list:
    names = settings.RQ_QUEUE_NAMES
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            q = Queue(name, connection=conn)
            pipe.llen(q.key)
            pipe.lindex(q.key, 0)
            pipe.zcard(q.started_job_registry.key)
            pipe.zcard(q.failed_job_registry.key)
        raw = pipe.execute()
    heads = {}
    with conn.pipeline(transaction=False) as pipe:
        for i, name in enumerate(names):
            head = raw[4 * i + 1]
            if head:
                heads[name] = True
                pipe.hget(f"rq:job:{head.decode()}", "enqueued_at")
        enqueued = dict(zip([n for n in names if n in heads], pipe.execute(), strict=True))
    depth = GaugeMetricFamily("reelflow_queue_depth", "Jobs waiting in an RQ queue.", labels=["queue"])
    age = GaugeMetricFamily(
        "reelflow_queue_oldest_job_age_seconds",
        "Age of the job at the head of an RQ queue (0: empty).",
        labels=["queue"],
    )
    started = GaugeMetricFamily("reelflow_queue_started", "Jobs running from an RQ queue.", labels=["queue"])
    failed = GaugeMetricFamily(
        "reelflow_queue_failed", "Jobs in an RQ queue's failed registry.", labels=["queue"]
    )
    for i, name in enumerate(names):
        depth.add_metric([name], raw[4 * i])
        started.add_metric([name], raw[4 * i + 2])
        failed.add_metric([name], raw[4 * i + 3])
        at = enqueued.get(name)
        seconds = 0.0
        if at:
            when = utcparse(at.decode())
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
            seconds = max(0.0, (now - when).total_seconds())
        age.add_metric([name], seconds)
    return [depth, age, started, failed]


def _worker_family(conn, now: datetime) -> GaugeMetricFamily:
    keys = sorted(get_keys(connection=conn))
    with conn.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, "state", "queues", "last_heartbeat")
        rows = pipe.execute()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    stale_after = timedelta(seconds=420)  # RQ's worker TTL: a worker silent this long is gone
    for state, queue_list, beat in rows:
        if state is None:
            continue
        label = state.decode()
        if beat:
            when = utcparse(beat.decode())
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
            if now - when > stale_after:
                label = "stale"
        counts[(label, lane_of([q for q in (queue_list or b"").decode().split(",") if q]))] += 1
    family = GaugeMetricFamily("reelflow_workers", "RQ workers by state and lane.", labels=["state", "lane"])
    for (state, lane), n in sorted(counts.items()):
        family.add_metric([state, lane], n)
    return family


def _pipeline_families() -> list:
    profiles = dict(Profile.objects.values_list("pk", "slug"))
    jobs = GaugeMetricFamily(
        "reelflow_jobs", "Encode jobs by state and profile.", labels=["state", "profile"]
    )
    for state, profile_id, n in (
        EncodeJob.objects.order_by().values_list("state", "profile_id").annotate(n=Count("id"))
    ):
        jobs.add_metric([state, profiles.get(profile_id, "?")], n)
    units = GaugeMetricFamily(
        "reelflow_units",
        "Encode units of unfinished jobs by state and profile (finished ones: reelflow_units_finished_total).",
        labels=["state", "profile"],
    )
    # Unfinished jobs are few; their units are found through the unit's job index (a join
    # filtered on the job's state scanned every unit: 0.8 s at 380,000 units on SQLite).
    active = dict(EncodeJob.objects.exclude(state__in=JOB_FINAL_STATES).values_list("pk", "profile_id"))
    by_state: dict[tuple[str, str], int] = defaultdict(int)
    for job_id, state, n in (
        Unit.objects.filter(job_id__in=list(active))
        .order_by()
        .values_list("job_id", "state")
        .annotate(n=Count("id"))
    ):
        by_state[(state, profiles.get(active[job_id], "?"))] += n
    for (state, profile), n in sorted(by_state.items()):
        units.add_metric([state, profile], n)
    return [jobs, units]


def _backup_families(now: datetime) -> list:
    runs = CounterMetricFamily(
        "reelflow_backup_runs", "Backup runs by policy and final state.", labels=["policy", "state"]
    )
    copied = CounterMetricFamily(
        "reelflow_backup_copied_bytes", "Bytes copied by backup runs, by policy.", labels=["policy"]
    )
    policies = list(BackupPolicy.objects.values_list("pk", "name", "verify_within_days"))
    names = {pk: name for pk, name, _ in policies}
    copied_by: dict[str, float] = defaultdict(float)
    for policy_id, state, n, copied_bytes in (
        BackupRun.objects.order_by()
        .values_list("policy_id", "state")
        .annotate(n=Count("id"), b=Sum("bytes_copied"))
    ):
        runs.add_metric([names.get(policy_id, "?"), state], n)
        copied_by[names.get(policy_id, "?")] += copied_bytes or 0
    for policy, value in sorted(copied_by.items()):
        copied.add_metric([policy], value)
    coverage = GaugeMetricFamily(
        "reelflow_backup_verify_coverage_ratio",
        "Share of current backed-up objects verified within their policy's window.",
        labels=["policy"],
    )
    # One grouped query for every policy: "fresh" is verified within its own policy's window.
    windows = {pk: days for pk, _, days in policies}
    fresh = Q(pk__in=[])
    for policy_id, days in windows.items():
        fresh |= Q(source__policy=policy_id, verified_at__gte=now - timedelta(days=days))
    rows = {
        row["source__policy"]: row
        for row in ObjectVersion.objects.filter(
            is_current=True, state__in=[VersionState.PROTECTED, VersionState.DAMAGED]
        )
        .values("source__policy")
        .annotate(total=Count("pk"), fresh=Count("pk", filter=fresh))
        .order_by()
    }
    for policy_id in windows:
        row = rows.get(policy_id, {"total": 0, "fresh": 0})
        coverage.add_metric([names[policy_id]], row["fresh"] / row["total"] if row["total"] else 1.0)
    findings = GaugeMetricFamily(
        "reelflow_backup_findings",
        "Backup check failures by cause and resolution.",
        labels=["cause", "resolution"],
    )
    for cause, resolution, n in (
        Failure.objects.order_by().values_list("cause", "resolution").annotate(n=Count("id"))
    ):
        findings.add_metric([cause, resolution], n)
    return [runs, copied, coverage, findings]


def _alert_families() -> list:
    violations = GaugeMetricFamily(
        "reelflow_violations_open", "Open security violations by severity.", labels=["severity"]
    )
    for severity, n in (
        Violation.objects.filter(state=ViolationState.OPEN)
        .order_by()
        .values_list("severity")
        .annotate(n=Count("id"))
    ):
        violations.add_metric([severity], n)
    alerts = GaugeMetricFamily(
        "reelflow_alerts", "Alerts by source, severity and state.", labels=["source", "severity", "state"]
    )
    for source, severity, state, n in (
        Alert.objects.order_by().values_list("source", "severity", "state").annotate(n=Count("id"))
    ):
        alerts.add_metric([source, severity, state], n)
    deliveries = GaugeMetricFamily(
        "reelflow_webhook_deliveries", "Outgoing webhook deliveries by state.", labels=["state"]
    )
    for state, n in Delivery.objects.order_by().values_list("state").annotate(n=Count("id")):
        deliveries.add_metric([state], n)
    return [violations, alerts, deliveries]


def _recorded_families() -> list:
    """Counters and histograms workers pushed to Redis (core.metrics)."""
    stored = metrics.read_all()
    out = []
    for name, (doc, bounds) in metrics.HISTOGRAMS.items():
        series: dict[str, dict[str, float]] = defaultdict(dict)
        for field, value in stored.get(name, {}).items():
            labels_key, _, part = field.rpartition("|")
            series[labels_key][part] = value
        labels = sorted({k for key in series for k in json.loads(key)})
        family = HistogramMetricFamily(name, doc, labels=labels)
        for key, parts in sorted(series.items()):
            values = json.loads(key)
            buckets = [(str(float(b)), parts.get(str(b), 0.0)) for b in bounds] + [
                ("+Inf", parts.get("+Inf", 0.0))
            ]
            family.add_metric([values.get(k, "") for k in labels], buckets, sum_value=parts.get("sum", 0.0))
        out.append(family)
    for name, doc in metrics.COUNTERS.items():
        stored_series = stored.get(name, {})
        labels = sorted({k for key in stored_series for k in json.loads(key)})
        family = CounterMetricFamily(name, doc, labels=labels)
        for key, value in sorted(stored_series.items()):
            values = json.loads(key)
            family.add_metric([values.get(k, "") for k in labels], value)
        out.append(family)
    return out


class ReelflowCollector(Collector):
    """Everything `/metrics` shows, computed when it is scraped."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def collect(self):
        now = timezone.now()
        yield from _queue_families(self.conn, now)
        yield _worker_family(self.conn, now)
        yield from _pipeline_families()
        yield from _backup_families(now)
        yield from _alert_families()
        yield from _recorded_families()
        up = GaugeMetricFamily("reelflow_scrape_timestamp_seconds", "When this scrape was computed.")
        up.add_metric([], now.timestamp())
        yield up
