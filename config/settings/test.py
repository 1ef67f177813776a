"""Test settings: real services on their own ports, names and databases.

The session fixtures in tests/conftest.py start SeaweedFS on a free port and point the S3
settings at it; Redis is the machine's, on its own database number and key prefixes.
"""

from .base import *  # noqa: F403
from .base import env

REDIS_URL = env.str("TEST_REDIS_URL", default="redis://127.0.0.1:6379/14")
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600} for name in RQ_QUEUE_NAMES}  # noqa: F405
# Worker processes started by tests must see the rows the tests write: a file, not :memory:.
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)  # noqa: F405
DATABASES["default"].setdefault("TEST", {})  # noqa: F405
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"]["NAME"] = str(VAR_DIR / "test-db.sqlite3")  # noqa: F405
RQ = {"COMMIT_MODE": "auto", "WORKER_CLASS": RQ_WORKER_CLASS}  # noqa: F405  # tests run in transactions that never commit
CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{"address": REDIS_URL, "socket_timeout": None}]  # noqa: F405
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "reelflow-test"  # noqa: F405
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CACHES["default"]["KEY_PREFIX"] = "reelflow-test"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
S3_EVENTS_TOKEN = "test-events-token"  # noqa: S105 - test-only value
REELFLOW_CHUNK_SECONDS = 4
# Each run's decoded chunks beside its database, not in the machine's temp folder.
REELFLOW_DECODED_CACHE_DIR = env.str("REELFLOW_DECODED_CACHE_DIR", default=str(VAR_DIR / "decoded"))  # noqa: F405
REELFLOW_SEGMENT_SECONDS = 2

# Worker processes that tests start get the test database's name here, so they read and
# write the same rows as the test that started them.
if env.str("REELFLOW_TEST_DB_NAME", default=""):
    DATABASES["default"]["NAME"] = env.str("REELFLOW_TEST_DB_NAME")  # noqa: F405
REELFLOW_RECONCILE_GRACE_SECONDS = 2
# Test receivers listen on 127.0.0.1; the SSRF tests turn this off where they need it.
WEBHOOKS_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOKS_ALLOW_PRIVATE_TARGETS", default=True)
