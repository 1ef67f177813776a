import subprocess
import sys
import uuid

import pytest
from django.conf import settings

from core.roles import Role
from pipeline.queues import MEDIA as MEDIA_QUEUES
from tests.conftest import ROOT, worker_env
from tests.pipeline.ffmpeg_support import ClipCache

ALL_QUEUES = (*MEDIA_QUEUES, "webhooks", "default")


@pytest.fixture
def ladders(transactional_db):
    """The shipped ladders and publish rule sets (data migrations load them; transactional
    tests flush them), so jobs in tests go through the same rules as in production."""
    from django.contrib.auth.models import Group

    from pipeline.ladders import ladders_sync
    from pipeline.models import AudioRenditionSpec, Profile, Rule, RuleSet, VideoRenditionSpec
    from pipeline.rules import rule_sets_sync

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    rule_sets_sync(RuleSet, Rule, Profile, Group)


@pytest.fixture
def publisher(transactional_db, ladders, make_user):
    return make_user(f"pub{uuid.uuid4().hex[:6]}", role=Role.PUBLISHER)


@pytest.fixture
def upload(s3):
    """upload(path, publisher, profile=..., title=...) -> key under the ingest prefix."""

    def put(path, publisher, *, profile: str = "fast", title: str | None = None, name: str | None = None) -> str:
        key = f"uploads/{publisher.username}/{uuid.uuid4().hex[:8]}-{name or path.name}"
        metadata = {"profile": profile}
        if title:
            metadata["title"] = title
        s3.upload_file(str(path), settings.S3_BUCKET_INGEST, key, ExtraArgs={"Metadata": metadata})
        return key

    return put


@pytest.fixture
def run_workers(redis_conn):
    """run_workers(n) starts n burst workers on every pipeline queue and waits until the
    queues are empty and the workers have exited."""

    def run(count: int = 2, *, timeout: float = 300, env: dict | None = None) -> list[int]:
        procs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", *ALL_QUEUES, "--burst"],
                cwd=ROOT, env=worker_env(env), stdout=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        return codes

    return run


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> ClipCache:
    """The ffmpeg tests' tiny generated clips, each made once per module (tests/pipeline/ffmpeg_support.py)."""
    return ClipCache(tmp_path_factory.mktemp("clips"))
