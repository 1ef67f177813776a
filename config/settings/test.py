"""Test settings: real services on their own ports, names and databases.

The session fixtures in tests/conftest.py start SeaweedFS on a free port and point the S3
settings at it; Redis is the machine's, on its own database number and key prefixes.

Tests run in parallel under pytest-xdist: worker gwN takes Redis database TEST_REDIS_URL's
number + N, and that number names its SQLite file and decoded-chunk cache too, so workers (and
two runs given bases far enough apart) never share state. Processes a test starts get the
resolved values through tests.conftest.worker_env, without PYTEST_XDIST_WORKER, so they land
on exactly the same database and folders instead of shifting again.
"""

import urllib.parse

from .base import *  # noqa: F403
from .base import env

XDIST_WORKER = env.str("PYTEST_XDIST_WORKER", default="")  # "gw0", "gw1", ... or "" (serial)
_base_url = urllib.parse.urlsplit(env.str("TEST_REDIS_URL", default="redis://127.0.0.1:6379/14"))
TEST_REDIS_BASE_DB = int(_base_url.path.strip("/") or 0)
TEST_REDIS_DB = TEST_REDIS_BASE_DB + (int(XDIST_WORKER.removeprefix("gw")) if XDIST_WORKER else 0)
REDIS_URL = urllib.parse.urlunsplit(_base_url._replace(path=f"/{TEST_REDIS_DB}"))
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600} for name in RQ_QUEUE_NAMES}  # noqa: F405
# Worker processes started by tests must see the rows the tests write: a file, not :memory:.
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)  # noqa: F405
DATABASES["default"].setdefault("TEST", {})  # noqa: F405
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # pytest-django adds "_gwN" under xdist; the base number keeps concurrent runs apart.
    DATABASES["default"]["TEST"]["NAME"] = str(VAR_DIR / f"test-db-r{TEST_REDIS_BASE_DB}.sqlite3")  # noqa: F405
RQ = {"COMMIT_MODE": "auto", "WORKER_CLASS": RQ_WORKER_CLASS}  # noqa: F405  # tests run in transactions that never commit
CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{"address": REDIS_URL, "socket_timeout": None}]  # noqa: F405
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "reelflow-test"  # noqa: F405
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CACHES["default"]["KEY_PREFIX"] = "reelflow-test"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
S3_EVENTS_TOKEN = "test-events-token"  # noqa: S105 - test-only value
REELFLOW_CHUNK_SECONDS = 4
# Each run's decoded chunks beside its database, not in the machine's temp folder; one folder
# per Redis database, since cache entries are named by job id and each database counts from 1.
REELFLOW_DECODED_CACHE_DIR = env.str("REELFLOW_DECODED_CACHE_DIR", default="")
if not REELFLOW_DECODED_CACHE_DIR:
    REELFLOW_DECODED_CACHE_DIR = str(VAR_DIR / f"decoded-r{TEST_REDIS_DB}")  # noqa: F405
elif XDIST_WORKER:
    REELFLOW_DECODED_CACHE_DIR = str(Path(REELFLOW_DECODED_CACHE_DIR) / XDIST_WORKER)  # noqa: F405
REELFLOW_SEGMENT_SECONDS = 2

# Worker processes that tests start get the test database's name here, so they read and
# write the same rows as the test that started them.
if env.str("REELFLOW_TEST_DB_NAME", default=""):
    DATABASES["default"]["NAME"] = env.str("REELFLOW_TEST_DB_NAME")  # noqa: F405
REELFLOW_RECONCILE_GRACE_SECONDS = 2
# Test receivers listen on 127.0.0.1; the SSRF tests turn this off where they need it.
WEBHOOKS_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOKS_ALLOW_PRIVATE_TARGETS", default=True)
