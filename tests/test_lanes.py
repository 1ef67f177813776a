"""Lanes: media workers take media work only; control work (security sweeps and responses,
webhook deliveries, the reconcile and backup sweeps, backups) has workers of its own, so it
never waits behind an encode or a quality measurement."""

import time

import django_rq
import psutil
import pytest
from django.conf import settings
from rq import Worker
from rq.cron import CronScheduler
from rq.job import Job

from devservices import stack
from pipeline.queues import MEDIA
from tests.conftest import wait_until
from tests.security.conftest import cloud, moto_server  # noqa: F401 - fixtures

RQWORKER_LINES = ("worker", *stack.LANES["control"])


def lane_queues() -> dict[str, list[str]]:
    """Each Procfile worker process and the queues it listens on."""
    commands = stack.procfile_commands()
    return {
        name: [a for a in stack.rqworker_arguments(command) if not a.startswith("-")]
        for name, command in commands.items()
        if stack.rqworker_arguments(command)
    }


def control_queues() -> set[str]:
    lanes = lane_queues()
    return {q for name in stack.LANES["control"] for q in lanes[name]}


def cron_jobs(redis_conn) -> dict[str, object]:
    scheduler = CronScheduler(connection=redis_conn)
    scheduler.load_config_from_file("config/cron.py")
    return {job.name: job for job in scheduler._cron_jobs}


def test_media_workers_take_media_work_only_and_control_work_has_workers_of_its_own():
    lanes = lane_queues()
    commands = stack.procfile_commands()
    assert set(lanes) == set(RQWORKER_LINES), "every rqworker line is a lane make run starts"
    assert lanes["worker"] == list(MEDIA), "media workers: the media lanes, most urgent first"
    assert lanes["security"] == ["security"], "security responses wait behind nothing but security work"
    assert not control_queues() & set(MEDIA)
    # Every queue has a worker, and only one kind of process serves it.
    served = [q for queues in lanes.values() for q in queues]
    assert sorted(served) == sorted(settings.RQ_QUEUE_NAMES)
    # Each runs RQ's scheduler for its own queues (retries with a delay come back through it).
    for name in RQWORKER_LINES:
        assert "--with-scheduler" in stack.rqworker_arguments(commands[name]), name


def test_every_cron_job_and_every_control_enqueue_goes_to_a_control_lane(redis_conn):
    from backups import jobs as backup_jobs
    from security import jobs as security_jobs

    control = control_queues()
    jobs = cron_jobs(redis_conn)
    assert jobs, "config/cron.py registers the sweeps"
    for name, job in jobs.items():
        assert job.queue_name in control, f"cron {name} on {job.queue_name}, not a control lane"
    assert jobs["security-sweep"].queue_name == "security"
    assert jobs["security-ack-expiry"].queue_name == "security"
    assert jobs["backups-tick"].queue_name != backup_jobs.QUEUE, "the tick never waits behind a copy"
    assert {security_jobs.QUEUE, backup_jobs.QUEUE, settings.WEBHOOKS_QUEUE} <= control

    security_jobs.instance_evaluate_enqueue(instance_id=1)
    backup_jobs.run_enqueue(1)
    backup_jobs.restore_enqueue(1)
    backup_jobs.failure_retry_enqueue(1)
    counts = {name: django_rq.get_queue(name).count for name in settings.RQ_QUEUE_NAMES}
    assert counts["security"] == 1 and counts["backup"] == 3
    assert not any(counts[name] for name in MEDIA)


def test_make_run_and_make_worker_start_the_lanes(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(stack, "_honcho", lambda env, workers, processes: started.append((workers, processes)))
    monkeypatch.setattr(stack, "_wait", lambda proc: 0)
    monkeypatch.setattr(stack, "_manage", lambda env, *args: None)
    monkeypatch.setattr(stack, "stack_env", lambda *, start_local: ({}, ["redis", "s3"] if start_local else []))
    monkeypatch.setattr(stack.threading, "Thread", lambda **kw: type("T", (), {"start": lambda self: None})())

    assert stack.main(["run", "--workers", "3"]) == 0
    assert started.pop() == (3, ["web", "worker", "security", "control", "backup", "scheduler", "redis", "s3"])

    for name in stack.REQUIRED_FOR_WORKER:
        monkeypatch.setenv(name, "x")
    assert stack.main(["worker", "--workers", "4"]) == 0
    assert started.pop() == (4, ["worker"]), "a worker machine adds media workers"
    monkeypatch.setenv("REELFLOW_WORKER_LANES", "media,control")
    assert stack.main(["worker", "--workers", "2"]) == 0
    assert started.pop() == (2, ["worker", "security", "control", "backup"])
    assert stack.main(["worker", "--workers", "0", "--lanes", "control"]) == 0
    assert started.pop() == (0, ["security", "control", "backup"])

    monkeypatch.delenv("DJANGO_SECRET_KEY")
    assert stack.main(["worker"]) == 2 and not started
    assert "DJANGO_SECRET_KEY: the web machine's value" in capsys.readouterr().err


def test_a_sweep_skips_when_a_newer_one_waits(redis_conn, monkeypatch):
    """Sweeps queued faster than they run collapse into the newest, instead of piling up."""
    from security import jobs as security_jobs
    from security.services import evaluation

    ran = []
    monkeypatch.setattr(evaluation, "security_sweep", lambda: ran.append(1) or {})
    security_jobs.sweep()
    assert ran == [1]
    django_rq.get_queue("security").enqueue(security_jobs.SWEEP)
    security_jobs.sweep()
    assert ran == [1], "a newer sweep is queued: this one has nothing to add"


def _busy(worker_names: set[str]) -> set[str]:
    workers = Worker.all(connection=django_rq.get_connection("default"))
    return {w.name for w in workers if w.name in worker_names and w.get_state() == "busy"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_security_runs_at_once_while_every_media_worker_is_busy(cloud, rq_worker_process, redis_conn):  # noqa: F811
    """Both media workers held by long jobs (as by a long encode); a sweep queued the way the
    scheduler queues it, and a response queued by the security app, run on the security worker
    within seconds and stop the instances they should."""
    from security import jobs as security_jobs
    from security.models import Instance, ResourceKind
    from security.services.inventory import ec2_instances_refresh

    lanes = {
        name: [a for a in stack.rqworker_arguments(c) if a] for name, c in stack.procfile_commands().items()
    }
    cloud_env = {
        "AWS_REGIONS": cloud.region, "AWS_ENDPOINT_URL_EC2": cloud.endpoint, "AWS_ENDPOINT_URL_SQS": cloud.endpoint,
        "AWS_ACCESS_KEY_ID": "simulated", "AWS_SECRET_ACCESS_KEY": "simulated",
    }  # fmt: skip
    media = [rq_worker_process(*lanes["worker"], env=cloud_env) for _ in range(2)]
    security = rq_worker_process(*lanes["security"], env=cloud_env)
    pids = {p.pid: p for p in (*media, security)}

    def registered() -> dict[int, str] | None:
        found = {w.pid: w.name for w in Worker.all(connection=redis_conn) if w.pid in pids}
        return found if len(found) == 3 else None

    names = wait_until(registered, timeout=90, message="the three workers registered with RQ")
    media_names = {names[p.pid] for p in media}
    encode = django_rq.get_queue("encode")
    for _ in media:
        encode.enqueue("time.sleep", 120, job_timeout=300)
    wait_until(lambda: _busy(media_names) == media_names, timeout=60, message="both media workers busy")

    try:
        # The sweep path: an instance nobody announced, from an image outside the approved list.
        unannounced = cloud.launch(image_id="ami-0badc0ffee0000001")
        sweep = cron_jobs(redis_conn)["security-sweep"]
        started = time.monotonic()
        job = sweep.enqueue(redis_conn)
        wait_until(
            lambda: cloud.describe(unannounced)["State"]["Name"] in ("stopping", "stopped"),
            timeout=15, message="the sweep stopping the instance",
        )  # fmt: skip
        swept_s = time.monotonic() - started
        wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=10, message="the sweep finished")
        assert Job.fetch(job.id, connection=redis_conn).worker_name == names[security.pid]

        # A response queued by the security app (an evaluation of one instance).
        queued = cloud.launch(image_id="ami-0badc0ffee0000001")
        (instance,) = ec2_instances_refresh(region=cloud.region, instance_ids=[queued])
        started = time.monotonic()
        security_jobs.instance_evaluate_enqueue(instance_id=instance.pk)
        wait_until(
            lambda: cloud.describe(queued)["State"]["Name"] in ("stopping", "stopped"),
            timeout=15, message="the queued evaluation stopping the instance",
        )  # fmt: skip
        responded_s = time.monotonic() - started

        # All the while, the media workers never left their long jobs.
        assert _busy(media_names) == media_names
        assert encode.started_job_registry.count == 2
        print(f"with both media workers busy: sweep stopped it in {swept_s:.1f} s, the response in {responded_s:.1f} s")
        assert swept_s < 10 and responded_s < 10, (swept_s, responded_s)
        assert Instance.objects.filter(kind=ResourceKind.EC2, external_id=unannounced).exists()
    finally:
        for proc in media:  # they would finish their two-minute jobs before a warm shutdown
            for process in [*psutil.Process(proc.pid).children(recursive=True), proc]:
                process.kill()  # with RQ's scheduler, a process of its own
            proc.wait()
