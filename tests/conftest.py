"""Fixtures that start real services: SeaweedFS on a free port, the machine's Redis."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_S3_ACCESS_KEY = "reelflow-test-access"
TEST_S3_SECRET_KEY = "reelflow-test-secret-key-0123456789"

# Tests that run real encodes on real `manage.py rqworker` processes are the long ones (10 to 40
# s each; together half of a run's time) and keep the CPUs busy. Under pytest-xdist (`--dist
# loadgroup`, pyproject.toml) each lane's tests run one after another on one worker, so at most
# two encode at once however many workers there are, while the light tests fill the others
# (and the lanes' workers once they are done). The two lanes are balanced by measured time
# (about 3 minutes each, run serially) and start right after the tests in a transaction
# (pytest_collection_modifyitems below says why not before).
ENCODE_LANE_1 = pytest.mark.xdist_group("encodes-1")
ENCODE_LANE_2 = pytest.mark.xdist_group("encodes-2")


def _transactional(item) -> bool:
    """pytest-django's test (as it sorts them): one whose database is emptied (flushed) after it."""
    marker = item.get_closest_marker("django_db")
    flags = {**dict(zip(("transaction", "reset_sequences"), marker.args, strict=False)), **marker.kwargs} if marker else {}
    names = getattr(item, "fixturenames", ())
    return bool(flags.get("transaction") or flags.get("reset_sequences")) or "transactional_db" in names or "live_server" in names


_DATABASE_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences", "django_db_serialized_rollback"}


def _uses_database(item) -> bool:
    return item.get_closest_marker("django_db") is not None or bool(_DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))


def _database_tests_only(config, items) -> None:
    """REELFLOW_TESTS_DATABASE_ONLY=1 (.ci/run's PostgreSQL pass): only the tests that use the
    database. The others (ffmpeg, S3, Redis, parsing, scheduling) give the same result whatever
    the database, and the SQLite pass runs every test."""
    kept = [item for item in items if _uses_database(item)]
    deselected = [item for item in items if not _uses_database(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """After pytest-django's sort: run the encode lanes first among the transactional tests,
    and make `--dist loadgroup` group again on pytest 9.2.

    A transactional test ends by emptying every table, the rows the data migrations wrote
    (profiles, rule sets, groups) included. pytest-django sorts the tests in a transaction first,
    then the transactional ones, then those without a database, so no test that reads those rows
    runs after one that emptied them; pyproject.toml's `--no-loadscope-reorder` keeps that order
    when xdist hands the tests out (by default it would send the biggest groups, the lanes,
    first), so every worker keeps it too. The lanes, the longest tests, then start as early as
    that allows: at the head of the transactional tests.

    pytest-xdist 3.8 tells its scheduler a test's group by appending "@group" to the node id
    through the private `_nodeid` field, which pytest 9.2 no longer reads (its ids are
    structured): every group was silently spread over all workers (pytest-dev/pytest-xdist#1386).
    This sets the same id through the new field; a no-op where xdist's own suffix took effect
    (older pytest, a fixed xdist)."""
    if os.environ.get("REELFLOW_TESTS_DATABASE_ONLY") == "1":
        _database_tests_only(config, items)
    lanes = [item for item in items if item.get_closest_marker("xdist_group") and _transactional(item)]
    if lanes:
        rest = [item for item in items if item not in set(lanes)]
        head = next((i for i, item in enumerate(rest) if _transactional(item)), len(rest))
        items[:] = rest[:head] + lanes + rest[head:]
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers under loadgroup
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest before 9.2: xdist's own suffix works
        return
    for item in items:
        groups = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        suffix = "@" + "_".join(sorted(groups))
        if groups and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)


def sample_path(name: str) -> Path:
    """Real footage from the shared samples folder: $REELFLOW_SAMPLES_DIR, else ../shared/samples
    beside the checkout, else the workplace's /work/shared/samples (a CI clone lives elsewhere)."""
    candidates = [os.environ.get("REELFLOW_SAMPLES_DIR", ""), str(ROOT.parent / "shared" / "samples"),
                  "/work/shared/samples"]
    for folder in filter(None, candidates):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return Path(candidates[1]) / name  # missing: the tests that need it say where they looked


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 server for the whole session, credentials enforced."""
    from devservices.seaweed import start_seaweed

    server = start_seaweed(
        data_dir=tmp_path_factory.mktemp("seaweed"),
        access_key=TEST_S3_ACCESS_KEY,
        secret_key=TEST_S3_SECRET_KEY,
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _s3_session_settings(s3_server):
    from django.conf import settings

    from core import s3

    settings.S3_ENDPOINT_URL = s3_server.endpoint_url
    settings.S3_PUBLIC_ENDPOINT_URL = s3_server.endpoint_url
    settings.S3_ACCESS_KEY = TEST_S3_ACCESS_KEY
    settings.S3_SECRET_KEY = TEST_S3_SECRET_KEY
    s3.clients_reset()
    s3.buckets_ensure(
        [settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP],
        cors_origins=[settings.SITE_URL],
    )
    return s3_server


@pytest.fixture
def s3(_s3_session_settings):
    """Settings point at the session's S3 server; yields a client for it."""
    from core import s3 as s3_module

    return s3_module.client()


@pytest.fixture(scope="session", autouse=True)
def _redis_database_exists():
    """xdist worker gwN uses TEST_REDIS_URL's database number + N (config/settings/test.py); say
    so plainly when that is past the server's last database (16 by default: 0 to 15)."""
    import redis
    from django.conf import settings

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5).ping()
    except redis.ResponseError as exc:
        pytest.fail(
            f"Redis database {settings.TEST_REDIS_DB} ({settings.REDIS_URL}: TEST_REDIS_URL's "
            f"{settings.TEST_REDIS_BASE_DB} + this xdist worker's index) is unusable ({exc}): "
            "lower TEST_REDIS_URL's number or run fewer workers (PYTEST_WORKERS)."
        )
    except redis.ConnectionError:
        pass  # the tests that use Redis say so themselves


@pytest.fixture
def redis_conn():
    """The test Redis database, emptied before the test."""
    import django_rq

    conn = django_rq.get_connection("default")
    conn.flushdb()
    yield conn
    conn.flushdb()


def worker_env(extra: dict | None = None) -> dict:
    """The environment of a process a test starts (workers, daphne, CLIs): this test process's
    S3, database, Redis database and decoded-chunk cache, resolved. PYTEST_XDIST_WORKER is
    left out so config.settings.test does not add the worker's index to the Redis database a
    second time (nor to a private Redis's, which a chaos test passes as TEST_REDIS_URL)."""
    from django.conf import settings
    from django.db import connection

    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "S3_ENDPOINT_URL": settings.S3_ENDPOINT_URL,
            "S3_ACCESS_KEY": settings.S3_ACCESS_KEY,
            "S3_SECRET_KEY": settings.S3_SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
            "REELFLOW_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "TEST_REDIS_URL": settings.REDIS_URL,
            "REELFLOW_DECODED_CACHE_DIR": settings.REELFLOW_DECODED_CACHE_DIR,
        }
    )
    env.update(extra or {})
    return env


@pytest.fixture
def rq_worker_process(redis_conn):
    """Start real `manage.py rqworker` processes; all are stopped at the end of the test."""
    procs: list[subprocess.Popen] = []

    def start(*queues: str, burst: bool = False, env: dict | None = None) -> subprocess.Popen:
        args = [sys.executable, "manage.py", "rqworker", *(queues or ("default",))]
        if burst:
            args.append("--burst")
        proc = subprocess.Popen(args, cwd=ROOT, env=worker_env(env))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def process_running(pid: int) -> bool:
    """Whether the process is alive: neither gone nor a zombie. (Asking psutil.pid_exists and
    then its status races with its exit: it can end in between, and the second look raises.)"""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate, *, timeout: float = 20, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def make_user(db):
    """make_user("alice", role=Role.PUBLISHER) -> a user with that role (password 'pw')."""
    from core.roles import Role
    from tests.factories import UserFactory

    def make(username: str, role: Role | None = Role.PUBLISHER, **extra):
        return UserFactory(username=username, role=role, **extra)

    return make
