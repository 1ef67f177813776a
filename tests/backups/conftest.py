"""Backups tests run against two real SeaweedFS servers: the session's (sources, and the
platform endpoint) and an "offsite" one started here (the usual backup destination).

Each test gets its own source prefixes and destination prefix, so tests never see each
other's objects on the shared servers.
"""

import os
import uuid

import pytest
from django.conf import settings

OFFSITE_ACCESS_ENV = "REELFLOW_TEST_OFFSITE_ACCESS_KEY"
OFFSITE_SECRET_ENV = "REELFLOW_TEST_OFFSITE_SECRET_KEY"
OFFSITE_BUCKET = "offsite-backup"
OFFSITE_KEYS = ("offsite-access", "offsite-secret-key-0123456789")


@pytest.fixture(scope="session")
def offsite_server(tmp_path_factory):
    """A second real S3 server, with its own credentials, held in env vars by name."""
    from devservices.seaweed import start_seaweed

    server = start_seaweed(
        data_dir=tmp_path_factory.mktemp("seaweed-offsite"), access_key=OFFSITE_KEYS[0], secret_key=OFFSITE_KEYS[1]
    )
    os.environ[OFFSITE_ACCESS_ENV], os.environ[OFFSITE_SECRET_ENV] = OFFSITE_KEYS
    server.client().create_bucket(Bucket=OFFSITE_BUCKET)
    yield server
    server.stop()


@pytest.fixture
def offsite(offsite_server):
    return offsite_server.client()


@pytest.fixture(scope="package", autouse=True)
def _fast_s3_retries():
    """Fault tests would otherwise wait through boto3's eight attempts with backoff. Set once
    for this package (clients are cached, and making one is slow), put back after it."""
    from django.conf import settings as django_settings

    from core import s3

    saved = django_settings.S3_MAX_ATTEMPTS
    django_settings.S3_MAX_ATTEMPTS = 2
    s3.clients_reset()
    yield
    django_settings.S3_MAX_ATTEMPTS = saved
    s3.clients_reset()


@pytest.fixture(autouse=True)
def _small_pools(settings):
    settings.BACKUP_COPY_CONCURRENCY = 4
    settings.BACKUP_VERIFY_CONCURRENCY = 4


@pytest.fixture
def tag():
    return uuid.uuid4().hex[:8]


@pytest.fixture
def make_policy(db, s3, offsite_server, tag):
    """make_policy(offsite=True, prefixes=("ingest", ...), **options) -> a policy whose sources are
    fresh prefixes of the session buckets ({"ingest": "uploads/t<tag>/", "media": "assets/..."})."""
    from backups.models import BackupPolicy
    from tests.backups.factories import BackupPolicyFactory, PolicySourceFactory, StorageEndpointFactory

    def make(*, offsite: bool = True, sources=("ingest",), name: str | None = None, **options) -> BackupPolicy:
        destination = StorageEndpointFactory()  # the platform's own S3, where the sources are
        if offsite:
            destination = StorageEndpointFactory(
                name="offsite", url=offsite_server.endpoint_url, access_key_env=OFFSITE_ACCESS_ENV,
                secret_key_env=OFFSITE_SECRET_ENV,
            )  # fmt: skip
        defaults = {
            "destination_endpoint": destination,
            "destination_bucket": OFFSITE_BUCKET if offsite else "${S3_BUCKET_BACKUP}",
            "destination_prefix": f"t{tag}/",
            "verify_mode": "full",
            "verify_source": True,
        }
        policy = BackupPolicyFactory(name=name or f"p{tag}", **{**defaults, **options})
        for source in sources:
            bucket, prefix = {
                "ingest": ("${S3_BUCKET_INGEST}", f"uploads/t{tag}/"),
                "media": ("${S3_BUCKET_MEDIA}", f"assets/t{tag}/"),
            }[source]
            PolicySourceFactory(policy=policy, bucket=bucket, prefix=prefix)
        return policy

    return make


@pytest.fixture
def put(s3):
    """put(key, data, bucket=ingest) writes a source object; returns its key."""

    def write(key: str, data: bytes, bucket: str | None = None) -> str:
        s3.put_object(Bucket=bucket or settings.S3_BUCKET_INGEST, Key=key, Body=data)
        return key

    return write


def run_policy(policy, **kwargs):
    """Start and drive one run in this process; returns the finished run."""
    from backups.models import RunTrigger
    from backups.services import runs

    run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND, verify=kwargs.pop("verify", "plan"))
    return runs.run_execute(run_id=run.pk, **kwargs)

