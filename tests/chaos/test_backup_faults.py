"""A backup run through a faulty S3: the same fault proxy as the encode test (5 % of requests
answered 500/503, added latency, one reset connection) in front of the platform's S3 and in
front of the offsite destination. The run completes through retries, every copy is byte
identical, and the verify step (which re-reads both sides) agrees."""

import hashlib
import os
import urllib.parse

import pytest

from backups.models import ObjectVersion, RunState, StorageEndpoint, VersionState
from core import s3 as s3_module
from tests.backups.conftest import (  # noqa: F401 - fixtures
    OFFSITE_BUCKET,
    _small_pools,
    make_policy,
    offsite,
    offsite_server,
    put,
    run_policy,
    tag,
)
from tests.chaos.faultproxy import FaultProxy

pytestmark = [pytest.mark.chaos, pytest.mark.django_db]


def proxy_for(endpoint_url: str, *, seed: int) -> FaultProxy:
    host, port = urllib.parse.urlsplit(endpoint_url).netloc.split(":")
    return FaultProxy(host, int(port), error_rate=0.05, max_latency_s=0.03, resets=1, reset_after=15, seed=seed).start()


def test_a_backup_run_completes_through_s3_errors_latency_and_a_reset(
    make_policy, put, offsite, offsite_server, s3_server, tag, settings  # noqa: F811
):
    blobs = {f"uploads/t{tag}/{i:03d}.bin": os.urandom(20_000 + i) for i in range(60)}
    for key, data in blobs.items():
        put(key, data)
    policy = make_policy(verify_mode="full")
    platform_proxy = proxy_for(s3_server.endpoint_url, seed=3)
    offsite_proxy = proxy_for(offsite_server.endpoint_url, seed=4)
    try:
        # Everything the run reads and writes goes through the proxies; boto3's own retries
        # (standard mode, settings.S3_MAX_ATTEMPTS) and the run's task retries carry it.
        settings.S3_ENDPOINT_URL = platform_proxy.url
        StorageEndpoint.objects.filter(name="offsite").update(url=offsite_proxy.url)
        s3_module.clients_reset()
        run = run_policy(policy, verify="full")
    finally:
        platform_proxy.stop()
        offsite_proxy.stop()
        s3_module.clients_reset()
    stats = [platform_proxy.stats, offsite_proxy.stats]
    print(f"platform: {stats[0]}; offsite: {stats[1]}; run {run.state}, {run.objects_copied} copied")
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.objects_copied == len(blobs)
    assert sum(sum(s.errors.values()) for s in stats) >= 2 and all(s.resets == 1 for s in stats), stats
    for key, data in blobs.items():
        version = ObjectVersion.objects.get(key=key, is_current=True)
        assert version.state == VersionState.PROTECTED
        assert version.sha256 == hashlib.sha256(data).hexdigest()
        assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read() == data
