"""The console's pages on seeded data: what they show, how they filter and page, and that the
number of queries each makes does not grow with the data."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console.demo import demo_data_seed
from core.models import Event
from pipeline.models import EncodeJob, JobState, Unit, UnitState

pytestmark = pytest.mark.django_db

# Queries a page may make: session, user, permissions (2), then the page's own.
MAX_QUERIES = {
    "console:jobs": 10,
    "console:job": 13,  # with the rules review (2) and the quality panel (1; 2 once measured)
    "console:workers": 10,
    "console:events": 8,
}


def _ids(response) -> list[int]:
    return [job.pk for job in response.context["page"].items]


def test_jobs_page_lists_every_publishers_jobs_with_counts_per_state(ops_client, seed):
    report = seed(60)
    response = ops_client.get(reverse("console:jobs"))
    assert response.status_code == 200
    counts = {s["state"]: s["count"] for s in response.context["state_links"]}
    assert counts[""] == 60 == sum(n for state, n in counts.items() if state in JobState.values)
    for state, n in report.by_state.items():
        assert counts[state] == n
    publishers = {job.asset.publisher_id for job in EncodeJob.objects.select_related("asset")}
    assert len(publishers) > 1
    body = response.content.decode()
    newest = EncodeJob.objects.order_by("-created_at", "-id").first()
    assert f'data-job="{newest.pk}"' in body and newest.asset.title in body


def test_jobs_filters_by_state_publisher_profile_date_and_search(ops_client, seed):
    seed(60)
    failed = ops_client.get(reverse("console:jobs"), {"state": "failed"})
    assert _ids(failed) and all(j.state == JobState.FAILED for j in failed.context["page"].items)
    # Counts stay those of the other filters, so the state tabs keep their numbers.
    assert {s["state"]: s["count"] for s in failed.context["state_links"]}[""] == 60

    job = EncodeJob.objects.select_related("asset__publisher", "profile").order_by("id")[7]
    by_publisher = ops_client.get(reverse("console:jobs"), {"publisher": job.asset.publisher.username})
    assert job.pk in _ids(by_publisher) or by_publisher.context["page"].next_cursor
    assert all(j.asset.publisher_id == job.asset.publisher_id for j in by_publisher.context["page"].items)

    by_profile = ops_client.get(reverse("console:jobs"), {"profile": job.profile.slug})
    assert all(j.profile_id == job.profile_id for j in by_profile.context["page"].items)

    assert _ids(ops_client.get(reverse("console:jobs"), {"q": f"#{job.pk}"})) == [job.pk]
    word = job.asset.title.split()[-1]
    assert all(word.lower() in j.asset.title.lower() or j.pk == job.pk
               for j in ops_client.get(reverse("console:jobs"), {"q": word}).context["page"].items)

    day = job.created_at.date()
    dated = ops_client.get(reverse("console:jobs"), {"created_from": day, "created_to": day})
    assert job.pk in _ids(dated) and all(j.created_at.date() == day for j in dated.context["page"].items)


def test_invalid_filters_are_reported_not_failed_on(ops_client, seed):
    seed(5)
    response = ops_client.get(reverse("console:jobs"), {"created_from": "2026-02-30", "state": "nope", "after": "garbage!"})
    assert response.status_code == 200
    assert response.context["form"].errors.keys() == {"created_from", "state"}
    assert len(_ids(response)) == 5, "an unreadable cursor shows the first page"
    inverted = ops_client.get(reverse("console:jobs"), {"created_from": "2026-03-02", "created_to": "2026-03-01"})
    assert "The end date is before the start date." in inverted.content.decode()


@pytest.mark.parametrize("sort", ["newest", "oldest", "priority"])
def test_keyset_pages_visit_every_job_once_both_ways(ops_client, seed, settings, sort):
    seed(23)
    EncodeJob.objects.filter(pk__in=EncodeJob.objects.order_by("id").values("pk")[:5]).update(priority=2)
    settings.CONSOLE_JOBS_PER_PAGE = 5
    seen, pages, params = [], [], {"sort": sort}
    while True:
        response = ops_client.get(reverse("console:jobs"), params)
        pages.append(_ids(response))
        seen += pages[-1]
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
        params = {"sort": sort, "after": cursor}
    ordering = {"newest": ("-created_at", "-id"), "oldest": ("created_at", "id"),
                "priority": ("-priority", "-created_at", "-id")}[sort]
    assert seen == list(EncodeJob.objects.order_by(*ordering).values_list("pk", flat=True))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    # And back: "previous" from the last page gives the pages before it, in order.
    back = ops_client.get(reverse("console:jobs"), {"sort": sort, "before": response.context["page"].prev_cursor})
    assert _ids(back) == pages[-2]


def test_job_page_shows_grid_units_speeds_commands_and_errors(ops_client, seed):
    seed(60)
    job = EncodeJob.objects.filter(state=JobState.FAILED, units__state=UnitState.FAILED).distinct().first()
    failed_unit = Unit.objects.get(job=job, state=UnitState.FAILED)
    response = ops_client.get(reverse("console:job", kwargs={"job_id": job.pk}))
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count('class="cell unit-') == Unit.objects.filter(job=job).count()
    assert f'data-unit="{failed_unit.pk}"' in body
    assert failed_unit.error in body and failed_unit.log_tail.splitlines()[0] in body
    assert job.failure_reason in body
    done = Unit.objects.filter(job=job, state=UnitState.DONE, chunk__isnull=False).first()
    if done is not None:
        row = next(u for u in response.context["units"] if u["id"] == done.pk)
        assert row["fps"] == pytest.approx(done.frames / done.ffmpeg_s)
        assert "real time" in body
    assert "X-Amz-Signature=…" in body and "X-Amz-Signature=0" not in body, "presigned signatures are not shown"
    actions = {a["action"]: a["enabled"] for a in response.context["actions"]}
    assert actions == {"retry": True, "restart": True, "cancel": False, "priority": False}

    only_failed = ops_client.get(reverse("console:job", kwargs={"job_id": job.pk}), {"units": "failed"})
    assert [u["id"] for u in only_failed.context["units"]] == [failed_unit.pk]


def test_unknown_job_is_404(ops_client, seed):
    seed(1)
    assert ops_client.get(reverse("console:job", kwargs={"job_id": 999999})).status_code == 404


def test_events_page_filters_and_links_to_subjects(ops_client, seed, operator):
    seed(20)
    job = EncodeJob.objects.order_by("id").first()
    response = ops_client.get(reverse("console:events"), {"subject": f"job:{job.pk}"})
    events = response.context["page"].items
    assert events and all(e.subject_type == "pipeline.encodejob" and e.subject_id == str(job.pk) for e in events)
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    assert f'href="{reverse("console:job", kwargs={"job_id": job.pk})}"' in response.content.decode()

    typed = ops_client.get(reverse("console:events"), {"type": "job."}).context["page"].items
    assert typed and all(e.type.startswith("job.") for e in typed)
    exact = ops_client.get(reverse("console:events"), {"type": "job.created"}).context["page"].items
    assert len(exact) == 20

    Event.objects.create(type="job.cancelled", subject_type="pipeline.encodejob", subject_id=str(job.pk),
                         actor=operator, actor_label=operator.username)
    by_actor = ops_client.get(reverse("console:events"), {"actor": operator.username}).context["page"].items
    assert [e.type for e in by_actor] == ["job.cancelled"]
    system = ops_client.get(reverse("console:events"), {"actor": "system"}).context["page"].items
    assert system and all(e.actor_label == "system" for e in system)

    old = ops_client.get(reverse("console:events"), {"created_to": (timezone.now() - timedelta(days=400)).date()})
    assert list(old.context["page"].items) == []
    bad = ops_client.get(reverse("console:events"), {"subject": "job-7"})
    assert "Give the subject as type:id" in bad.content.decode()


def test_workers_page_shows_queues_charts_and_failed_registry(ops_client, seed):
    seed(40)
    response = ops_client.get(reverse("console:workers"), {"hours": 3})
    assert response.status_code == 200
    chart = response.context["throughput"]
    finished = Unit.objects.filter(state=UnitState.DONE, finished_at__gte=timezone.now() - timedelta(hours=3)).count()
    assert chart["done_total"] == finished
    assert response.context["depths"]["lines"], "the seeded queue samples are drawn"
    assert "<svg" in response.content.decode()
    day = ops_client.get(reverse("console:workers"), {"hours": 24})
    # Beyond six hours the buckets are whole hours: the window starts 23 hours before this hour.
    since = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    assert day.context["throughput"]["done_total"] == Unit.objects.filter(state=UnitState.DONE, finished_at__gte=since).count()


@pytest.mark.parametrize("url_name", sorted(MAX_QUERIES))
def test_queries_per_page_do_not_grow_with_the_data(ops_client, url_name, django_assert_max_num_queries, redis_conn):
    """The same bound holds with 15 jobs and with 120: no query per row."""
    for jobs in (15, 105):
        demo_data_seed(jobs=jobs, publishers=6, sample_hours=1, seed=jobs)
        job = EncodeJob.objects.filter(units__isnull=False).order_by("-id").first()
        kwargs = {"job_id": job.pk} if url_name == "console:job" else {}
        with django_assert_max_num_queries(MAX_QUERIES[url_name]):
            response = ops_client.get(reverse(url_name, kwargs=kwargs))
        assert response.status_code == 200


def test_overview_shows_counts_health_and_latest_failures(ops_client, seed, s3):
    seed(40)
    response = ops_client.get(reverse("console:home"))
    assert response.status_code == 200
    failed = EncodeJob.objects.filter(state=JobState.FAILED).order_by("-created_at").first()
    if failed is not None:
        assert f"#{failed.pk}" in response.content.decode()
    assert response.context["counts"]["total"] == 40


def test_workers_page_shows_each_worker_its_current_unit_counts_and_versions(ops_client, seed, redis_conn):
    from rq import Queue, Worker

    from security.models import Instance, ResourceKind

    seed(20)
    unit = Unit.objects.filter(state=UnitState.DONE).select_related("rendition", "chunk").first()
    Unit.objects.filter(pk=unit.pk).update(state=UnitState.RUNNING)
    worker = Worker([Queue("encode", connection=redis_conn)], connection=redis_conn, name="w-enc-1")
    worker.register_birth()
    worker.set_state("busy")
    worker.set_current_job_id(unit.rq_id)
    Unit.objects.filter(pk__in=Unit.objects.filter(state=UnitState.DONE).values("pk")[:3]).update(worker="w-enc-1")
    idle = Worker([Queue("default", connection=redis_conn)], connection=redis_conn, name="w-default-1")
    idle.register_birth()
    Instance.objects.create(kind=ResourceKind.WORKER, external_id="w-enc-1", name="enc",
                            config={"Version": "0.1.0+abc", "FfmpegVersion": "ffmpeg version 5.1.6"})
    try:
        response = ops_client.get(reverse("console:workers"))
    finally:
        worker.register_death()
        idle.register_death()
    rows = {w["name"]: w for w in response.context["workers"]}
    assert set(rows) == {"w-enc-1", "w-default-1"}
    busy = rows["w-enc-1"]
    assert busy["state"] == "busy" and busy["queues"] == ["encode"] and busy["unit"]["id"] == unit.pk
    assert busy["units_done"] == 3 and busy["heartbeat_age"] < 60
    assert busy["reelflow_version"] == "0.1.0+abc" and busy["ffmpeg_version"].startswith("ffmpeg version")
    assert rows["w-default-1"]["registered"] is False and rows["w-default-1"]["rq_version"]
    body = response.content.decode()
    assert f'href="{reverse("console:job", kwargs={"job_id": unit.job_id})}#unit-{unit.pk}"' in body
    assert "not registered with security" in body
