"""Reelflow's own workers as instances: real `manage.py rqworker` processes register at start;
a misconfigured one (DEBUG on, or a wrong registration token) is shut down and exits, a
well-configured one keeps working."""

import subprocess
import sys
import time

import pytest

from core.models import Alert, Event
from security.models import Instance, InstanceState, ResourceKind, ResponseAction, ResponseKind, Violation
from tests.conftest import ROOT, wait_until, worker_env

WORKER_CLASS = "security.worker.RegisteringWorker"


@pytest.fixture
def start_worker(redis_conn):
    procs = []

    def start(env: dict | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "default", "--worker-class", WORKER_CLASS],
            cwd=ROOT, env=worker_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _exit_within(proc: subprocess.Popen, seconds: float) -> int:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"worker still running after {seconds}s:\n{err.decode()[-3000:]}") from None


@pytest.mark.django_db(transaction=True)
def test_misconfigured_workers_are_shut_down_and_a_good_one_keeps_working(start_worker):
    from security.services.baseline import fleet_baseline_get

    fleet_baseline_get()  # the baseline the test process's settings define
    started = time.monotonic()
    debug = start_worker({"DJANGO_DEBUG": "true"})
    wrong_token = start_worker({"SECURITY_WORKER_TOKEN": "not-the-fleet-token"})
    good = start_worker()

    assert _exit_within(debug, 60) == 0
    assert _exit_within(wrong_token, 60) == 0
    took = time.monotonic() - started

    workers = wait_until(
        lambda: list(Instance.objects.filter(kind=ResourceKind.WORKER)) if Instance.objects.filter(kind=ResourceKind.WORKER).count() == 3 else None,
        timeout=30, message="three registrations",
    )  # fmt: skip
    by_config = {}
    for instance in workers:
        key = (
            "debug"
            if instance.config["Debug"]
            else ("good" if Violation.objects.filter(instance=instance).count() == 0 else "token")
        )
        by_config[key] = instance
    assert set(by_config) == {"debug", "good", "token"}
    assert (
        by_config["debug"].config["Queues"] == ["default"] and by_config["debug"].config["Pid"] == debug.pid
    )
    assert by_config["debug"].config["FfmpegVersion"] and by_config["debug"].config["SettingsDigest"]
    assert (
        by_config["debug"].config["Redis"]["Host"] == "127.0.0.1"
        and "Password" not in by_config["debug"].config["Redis"]
    )
    assert "TokenSha256" in by_config["token"].config and "not-the-fleet-token" not in str(
        by_config["token"].config
    )

    assert set(Violation.objects.filter(instance=by_config["debug"]).values_list("policy", flat=True)) == {
        "worker-not-debug"
    }
    assert set(Violation.objects.filter(instance=by_config["token"]).values_list("policy", flat=True)) == {
        "worker-registration-token"
    }
    for name in ("debug", "token"):
        wait_until(
            lambda name=name: Instance.objects.get(pk=by_config[name].pk).state == InstanceState.STOPPED,
            timeout=10,
            message="stopped",
        )
        shutdown = ResponseAction.objects.get(
            kind=ResponseKind.SHUTDOWN_WORKER, target_id=by_config[name].external_id
        )
        alert = Alert.objects.get(pk=shutdown.alert_id)
        registered = Event.objects.get(type="security.worker_registered", subject_id=str(by_config[name].pk))
        assert (shutdown.taken_at - registered.created_at).total_seconds() < 2, (
            "response within 2 s of the start"
        )
        # The alert stays open for a reviewer even though the worker (and so the violation) is gone.
        assert alert.state == "open" and alert.actions[0]["action"] == "shutdown-worker"
    assert good.poll() is None, "the well-configured worker must keep running"
    assert took < 60
