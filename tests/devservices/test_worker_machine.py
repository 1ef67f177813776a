"""README, "Adding a worker machine", followed exactly: a clean environment plus the settings the
section names, then what `make worker` runs. The worker registers and keeps working; without
the web machine's secret key `make worker` refuses to start, and a worker started anyway is shut
down by security and says in its own log what to set."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from security.models import FleetBaseline, Instance, InstanceState, ResourceKind, ResponseAction, Violation
from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WEB_SECRET_KEY = "web-machine-secret-key-" + "k7Qx9-Lm2Pz4-Vr8Tn1-Hs6Wb3-Jd5Fc0"
REFUSAL = (
    "this worker's registration token does not match the fleet's: set DJANGO_SECRET_KEY to the web "
    "machine's value"
)


def database_url() -> str:
    """The test database as a DATABASE_URL, as the first machine would publish it."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def fleet(settings, s3):
    """The first machine: its secret key defines the fleet's registration token."""
    settings.SECRET_KEY = WEB_SECRET_KEY
    FleetBaseline.objects.all().delete()
    from security.services.baseline import fleet_baseline_get

    fleet_baseline_get()
    Instance.objects.filter(kind=ResourceKind.WORKER).delete()


def readme_exports() -> set[str]:
    """The variables the README's "Adding a worker machine" exports."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Adding a worker machine") :]
    block = section[section.index("```sh") : section.index("```", section.index("```sh") + 5)]
    return {name for line in block.splitlines() if line.startswith("export ") for name in re.findall(r"\b([A-Z][A-Z0-9_]*)=", line)}


def documented_env(tmp_path: Path, *, with_key: bool = True) -> dict:
    """A clean environment with exactly the README's settings for a worker machine (one media
    worker: `RQ_WORKERS=1`, as the README shows; and a fresh checkout's empty var/)."""
    values = {
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url(),
        "S3_ENDPOINT_URL": settings.S3_ENDPOINT_URL,
        "S3_ACCESS_KEY": settings.S3_ACCESS_KEY,
        "S3_SECRET_KEY": settings.S3_SECRET_KEY,
        "DJANGO_SECRET_KEY": WEB_SECRET_KEY,
    }
    assert readme_exports() == set(values), "the README's list and this test's agree"
    if not with_key:
        del values["DJANGO_SECRET_KEY"]
    return {
        "PATH": os.environ["PATH"],
        "REELFLOW_VAR_DIR": str(tmp_path / "var"),  # a new machine's checkout: nothing under var/
        "RQ_WORKERS": "1",
        **values,
    }


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_worker_started_with_the_documented_settings_joins(fleet, redis_conn, tmp_path):
    log = tmp_path / "make-worker.log"
    with log.open("w") as out:
        # What `make worker` runs once its venv is installed.
        proc = subprocess.Popen(
            [sys.executable, "-m", "devservices.stack", "worker"], cwd=ROOT, env=documented_env(tmp_path),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def joined():
            assert proc.poll() is None, log.read_text()[-3000:]
            return Instance.objects.filter(kind=ResourceKind.WORKER).first()

        instance = wait_until(joined, timeout=120, message="the new machine's worker registering")
        time.sleep(3)  # a shutdown answers the registration within a second
        instance.refresh_from_db()
        assert instance.state == InstanceState.RUNNING, log.read_text()[-3000:]
        assert instance.config["SettingsModule"] == "config.settings.local"
        assert instance.config["Queues"] == ["ingest", "publish", "package", "assemble", "quality", "encode"]
        assert not Violation.objects.filter(instance=instance).exists()
        assert not ResponseAction.objects.filter(target_id=instance.external_id).exists()
        assert "refused by security" not in log.read_text()
        assert proc.poll() is None
    finally:
        _stop(proc)


def test_without_the_key_make_worker_refuses_and_a_worker_started_anyway_says_what_to_set(
    fleet, redis_conn, tmp_path
):
    env = documented_env(tmp_path, with_key=False)
    refused = subprocess.run(
        [sys.executable, "-m", "devservices.stack", "worker"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "DJANGO_SECRET_KEY: the web machine's value" in refused.stderr

    # Started by hand (a service unit, a container) without the key: security shuts it down,
    # and its own log says what to set.
    worker = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "ingest", "encode"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert REFUSAL in worker.stderr, worker.stderr[-3000:]
    instance = Instance.objects.get(kind=ResourceKind.WORKER)
    assert set(Violation.objects.filter(instance=instance).values_list("policy", flat=True)) == {
        "worker-registration-token"
    }
