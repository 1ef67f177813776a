"""Operator actions through the pages: each goes through the pipeline's services, changes the
rows, enqueues the right work in Redis, and is recorded with who did it."""

import os

import django_rq
import pytest
from django.test import Client
from django.urls import reverse
from rq import SimpleWorker

from console.models import QueueSample
from console.services import queue_samples_record
from core.models import Event
from core.roles import Role
from pipeline import progress
from pipeline.models import EncodeJob, JobState, Rendition, RenditionState, Unit, UnitState
from pipeline.services.units import units_enqueue
from tests.console.factories import job_with_units, outputs_store

pytestmark = pytest.mark.django_db

D, Q, R, F, C = UnitState.DONE, UnitState.QUEUED, UnitState.RUNNING, UnitState.FAILED, UnitState.CANCELLED


@pytest.fixture
def publisher(make_user, ladders):
    return make_user("pat", role=Role.PUBLISHER)


@pytest.fixture
def ladders(db):
    from pipeline.ladders import ladders_sync
    from pipeline.models import AudioRenditionSpec, Profile, VideoRenditionSpec

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)


def act(client, job, action: str):
    return client.post(reverse("console:job_action", kwargs={"job_id": job.pk}), {"action": action}, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def events(job, type_: str) -> list[Event]:
    return list(Event.objects.filter(subject_type="pipeline.encodejob", subject_id=str(job.pk), type=type_))


def test_raise_priority_moves_the_jobs_queued_units_to_the_front(
    ops_client, operator, publisher, redis_conn, django_capture_on_commit_callbacks
):
    first = job_with_units(publisher, unit_states={"h264-240p": [Q, Q], "h264-360p": [Q, Q]})
    second = job_with_units(publisher, unit_states={"h264-240p": [D, Q], "h264-360p": [R, Q]})
    for job in (first, second):
        units_enqueue(unit_ids=list(Unit.objects.filter(job=job, state=Q).order_by("-cost").values_list("pk", flat=True)))
    old_ids = set(Unit.objects.filter(job=second, state=Q).values_list("rq_id", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        response = act(ops_client, second, "priority")

    assert messages_of(response) == [f"Job {second.pk} now has priority 1; its waiting work moved to the front of the queue."]
    queue = django_rq.get_queue("encode")
    waiting = list(Unit.objects.filter(job=second, state=Q).order_by("-cost"))
    assert queue.job_ids[: len(waiting)] == [u.rq_id for u in waiting], "costliest first, at the front"
    assert not old_ids & set(queue.job_ids), "the old RQ jobs left the queue"
    assert len(queue.job_ids) == 4 + 2
    second.refresh_from_db()
    assert second.priority == 1
    [event] = events(second, "job.priority_raised")
    assert event.actor == operator and event.payload["units"] == 2


def test_restart_after_a_failed_assembly_only_assembles(ops_client, operator, publisher, redis_conn, s3,
                                                         django_capture_on_commit_callbacks):
    job = job_with_units(publisher, state=JobState.FAILED,
                         unit_states={"h264-240p": [D, D], "h264-360p": [D, D], "aac-96k": [D]},
                         rendition_states={"h264-240p": RenditionState.READY, "aac-96k": RenditionState.READY,
                                           "h264-360p": RenditionState.ASSEMBLING})
    outputs_store(job, s3)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(ops_client, job, "restart")
    assert messages_of(response) == [f"Job {job.pk} restarted from its assemble step."]
    job.refresh_from_db()
    assert job.state == JobState.ENCODING and job.failure_reason == "" and job.finished_at is None
    rendition = Rendition.objects.get(job=job, name="h264-360p")
    assert rendition.state == RenditionState.ASSEMBLING
    assert django_rq.get_queue("assemble").job_ids == [f"assemble-{rendition.pk}"]
    assert django_rq.get_queue("encode").count == 0, "nothing valid is encoded again"
    [event] = events(job, "job.restarted")
    assert event.actor == operator and event.payload["step"] == "assemble" and event.payload["previous"] == "failed"


def test_restart_of_a_cancelled_job_requeues_what_is_unfinished_and_lifts_the_cancel_flag(
    ops_client, publisher, redis_conn, s3, django_capture_on_commit_callbacks
):
    job = job_with_units(publisher, state=JobState.CANCELLED,
                         unit_states={"h264-240p": [D, C], "h264-360p": [C, C], "aac-96k": [D]},
                         rendition_states={"h264-240p": RenditionState.CANCELLED, "h264-360p": RenditionState.CANCELLED,
                                           "aac-96k": RenditionState.READY})
    outputs_store(job, s3)
    progress.cancel_flag_set(job.pk)
    with django_capture_on_commit_callbacks(execute=True):
        act(ops_client, job, "restart")
    assert not progress.cancel_flag_is_set(job.pk)
    assert Unit.objects.filter(job=job, state=Q).count() == 3
    assert django_rq.get_queue("encode").count == 3
    assert set(Rendition.objects.filter(job=job).values_list("name", "state")) == {
        ("h264-240p", RenditionState.ENCODING), ("h264-360p", RenditionState.ENCODING), ("aac-96k", RenditionState.READY)}
    assert Rendition.objects.get(job=job, name="h264-240p").units_done == 1


def test_restart_of_a_job_that_failed_before_planning_probes_again(ops_client, publisher, redis_conn,
                                                                   django_capture_on_commit_callbacks):
    job = job_with_units(publisher, state=JobState.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        act(ops_client, job, "restart")
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert django_rq.get_queue("ingest").job_ids == [f"ingest-{job.pk}"]


def test_restart_with_every_rendition_ready_only_packages(ops_client, publisher, redis_conn, s3,
                                                          django_capture_on_commit_callbacks):
    job = job_with_units(publisher, state=JobState.FAILED, unit_states={"h264-240p": [D, D], "aac-96k": [D]},
                         rendition_states={"h264-240p": RenditionState.READY, "aac-96k": RenditionState.READY})
    outputs_store(job, s3)
    queue = django_rq.get_queue("package")
    stale = queue.enqueue("os.getpid", job_id=f"package-{job.pk}")
    queue.remove(stale)
    queue.failed_job_registry.add(stale, ttl=600)
    with django_capture_on_commit_callbacks(execute=True):
        act(ops_client, job, "restart")
    job.refresh_from_db()
    assert job.state == JobState.PACKAGING
    assert queue.job_ids == [f"package-{job.pk}"]
    assert f"package-{job.pk}" not in queue.failed_job_registry.get_job_ids(), "the old failure left the registry"


def test_retry_failed_units_requeues_them_first_then_what_the_failure_dropped(
    ops_client, operator, publisher, redis_conn, django_capture_on_commit_callbacks
):
    job = job_with_units(publisher, state=JobState.FAILED,
                         unit_states={"h264-240p": [D, C], "h264-360p": [F, C], "aac-96k": [D]})
    failed = Unit.objects.get(job=job, state=F)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(ops_client, job, "retry")
    assert messages_of(response) == [f"Job {job.pk}: 1 failed unit queued again."]
    queue = django_rq.get_queue("encode")
    failed.refresh_from_db()
    assert queue.job_ids[0] == failed.rq_id and failed.state == Q
    assert queue.count == 3
    [event] = events(job, "job.units_retried")
    assert event.actor == operator and event.payload["failed_units"] == [failed.pk]


@pytest.mark.parametrize(
    ("state", "units", "action", "message"),
    [
        (JobState.FAILED, {"h264-240p": [D, C]}, "retry", "has no failed units. Restart it from the failed step instead."),
        (JobState.PUBLISHED, {"h264-240p": [D, D]}, "restart", "is published: only failed, cancelled, held or rejected jobs can be restarted."),
        (JobState.PUBLISHED, {"h264-240p": [D, D]}, "cancel", "is published already: there is nothing to cancel."),
        (JobState.CANCELLED, {"h264-240p": [D, C]}, "priority", "is cancelled: it has no work waiting."),
    ],
)
def test_an_action_that_does_not_apply_is_refused_with_the_reason(ops_client, publisher, redis_conn, state, units,
                                                                   action, message):
    job = job_with_units(publisher, state=state, unit_states=units)
    response = act(ops_client, job, action)
    assert messages_of(response) == [f"Job {job.pk} {message}"]
    assert not Event.objects.filter(subject_id=str(job.pk), actor__isnull=False).exists()


def test_bulk_cancel_cancels_each_selected_job_and_reports_refusals(ops_client, operator, publisher, redis_conn,
                                                                    django_capture_on_commit_callbacks):
    running = [job_with_units(publisher, unit_states={"h264-240p": [R, Q]}) for _ in range(2)]
    published = job_with_units(publisher, state=JobState.PUBLISHED, unit_states={"h264-240p": [D, D]})
    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(reverse("console:jobs_bulk"), {
            "action": "cancel", "job": [j.pk for j in [*running, published]], "next": reverse("console:jobs") + "?state=encoding",
        }, follow=True)
    assert response.redirect_chain[-1][0] == reverse("console:jobs") + "?state=encoding"
    assert messages_of(response) == ["Cancel: done for 2 jobs; 1 refused",
                                     f"Job {published.pk} is published already: there is nothing to cancel."]
    assert set(EncodeJob.objects.filter(pk__in=[j.pk for j in running]).values_list("state", flat=True)) == {JobState.CANCELLED}
    for job in running:
        [event] = events(job, "job.cancelled")
        assert event.actor == operator
        assert progress.cancel_flag_is_set(job.pk)


def test_bulk_form_errors_are_shown(ops_client):
    response = ops_client.post(reverse("console:jobs_bulk"), {"action": "cancel"}, follow=True)
    assert messages_of(response) == ["Select at least one job."]
    response = ops_client.post(reverse("console:jobs_bulk"), {"action": "explode", "job": ["1"]}, follow=True)
    assert "Select a valid choice" in messages_of(response)[0]


def test_actions_need_the_csrf_token(operator, publisher):
    job = job_with_units(publisher, unit_states={"h264-240p": [Q, Q]})
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(reverse("console:job_action", kwargs={"job_id": job.pk}), {"action": "cancel"}).status_code == 403
    assert client.post(reverse("console:jobs_bulk"), {"action": "cancel", "job": [job.pk]}).status_code == 403
    assert client.post(reverse("console:failed_requeue"), {"queue": "default", "rq_id": "x"}).status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.ENCODING


def test_a_redirect_back_never_leaves_the_site(ops_client, publisher, redis_conn):
    job = job_with_units(publisher, unit_states={"h264-240p": [Q, Q]})
    response = ops_client.post(reverse("console:job_action", kwargs={"job_id": job.pk}),
                               {"action": "priority", "next": "https://evil.example/"})
    assert response["Location"] == reverse("console:job", kwargs={"job_id": job.pk})


def test_requeue_from_the_failed_registry(ops_client, operator, redis_conn):
    queue = django_rq.get_queue("default")
    rq_job = queue.enqueue(os.path.getsize, "/nonexistent/reelflow-test")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert rq_job.id in queue.failed_job_registry.get_job_ids()

    page = ops_client.get(reverse("console:workers"))
    [row] = page.context["failed"]["rows"]
    assert row["id"] == rq_job.id and "FileNotFoundError" in row["exc_last"]

    response = ops_client.post(reverse("console:failed_requeue"), {"queue": "default", "rq_id": rq_job.id}, follow=True)
    assert messages_of(response) == [f"RQ job {rq_job.id} is back on the default queue."]
    assert queue.job_ids == [rq_job.id] and queue.failed_job_registry.count == 0
    [event] = Event.objects.filter(type="rq.job_requeued")
    assert event.actor == operator and event.subject_id == rq_job.id

    again = ops_client.post(reverse("console:failed_requeue"), {"queue": "default", "rq_id": rq_job.id}, follow=True)
    assert "is not in the failed registry of default any more" in messages_of(again)[0]
    nowhere = ops_client.post(reverse("console:failed_requeue"), {"queue": "nope", "rq_id": "x"}, follow=True)
    assert messages_of(nowhere) == ["There is no queue named 'nope'."]


def test_requeue_of_a_failed_pipeline_step_restarts_its_job(ops_client, publisher, redis_conn, s3,
                                                             django_capture_on_commit_callbacks):
    job = job_with_units(publisher, state=JobState.FAILED,
                         unit_states={"h264-240p": [D, F], "aac-96k": [D]})
    outputs_store(job, s3)
    unit = Unit.objects.get(job=job, state=F)
    encode = django_rq.get_queue("encode")
    units_enqueue(unit_ids=[unit.pk])
    unit.refresh_from_db()
    encode.remove(unit.rq_id)
    encode.failed_job_registry.add(encode.fetch_job(unit.rq_id), ttl=600)
    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(reverse("console:failed_requeue"), {"queue": "encode", "rq_id": unit.rq_id},
                                   follow=True)
    assert messages_of(response) == [
        f"Job {job.pk} restarted from its encode step (the failed RQ job {unit.rq_id} was one of its steps)."]
    job.refresh_from_db()
    unit.refresh_from_db()
    assert job.state == JobState.ENCODING and unit.state == Q
    assert encode.job_ids == [unit.rq_id] and encode.failed_job_registry.count == 0


def test_queue_samples_record_one_row_per_queue_and_forget_old_ones(redis_conn, settings):
    from datetime import timedelta

    from django.utils import timezone

    django_rq.get_queue("encode").enqueue("os.getpid")
    QueueSample.objects.create(at=timezone.now() - timedelta(days=8), queue="encode", queued=1, started=0, failed=0)
    assert queue_samples_record() == len(settings.RQ_QUEUE_NAMES)
    assert QueueSample.objects.count() == len(settings.RQ_QUEUE_NAMES)
    assert QueueSample.objects.get(queue="encode").queued == 1
