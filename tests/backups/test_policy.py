"""Policies are data: the default one, endpoints whose credentials come from named variables."""

import importlib

import pytest
from django.apps import apps
from django.conf import settings

from backups import storage
from backups.models import BackupPolicy, StorageEndpoint
from backups.services.common import destination_place, source_place

pytestmark = pytest.mark.django_db


def default_policy_ensure() -> BackupPolicy:
    """The default policy as the migrations make it (idempotent; a flushed test database may
    have lost the rows)."""
    importlib.import_module("backups.migrations.0002_default_policy").create(apps, None)
    importlib.import_module("backups.migrations.0004_default_policy_published").extend(apps, None)
    return BackupPolicy.objects.get(name="default")


def test_the_default_policy_protects_uploads_renditions_and_published_packages():
    policy = default_policy_ensure()
    sources = {(storage.bucket_resolve(s.bucket), s.prefix): s.write_once_patterns for s in policy.sources.all()}
    assert set(sources) == {
        (settings.S3_BUCKET_INGEST, "uploads/"), (settings.S3_BUCKET_MEDIA, "assets/"), (settings.S3_BUCKET_MEDIA, "published/"),
    }
    # Renditions (named by their parameters' digest) and published packages are written once.
    assert sources[(settings.S3_BUCKET_MEDIA, "published/")] == "published/*"
    assert sources[(settings.S3_BUCKET_MEDIA, "assets/")] == "assets/*/jobs/*/renditions/*"
    assert sources[(settings.S3_BUCKET_INGEST, "uploads/")] == ""
    assert storage.bucket_resolve(policy.destination_bucket) == settings.S3_BUCKET_BACKUP
    target = destination_place(policy).target
    assert target.endpoint_url == settings.S3_ENDPOINT_URL  # follows the settings, nothing frozen
    assert policy.enabled and policy.verify_within_days > 0


def test_endpoint_credentials_are_read_from_the_variables_it_names(monkeypatch, s3):
    endpoint = StorageEndpoint.objects.create(
        name="elsewhere", url="http://backup.example:9000", access_key_env="ELSEWHERE_AK", secret_key_env="ELSEWHERE_SK"
    )
    monkeypatch.setenv("ELSEWHERE_AK", "ak-from-env")
    monkeypatch.setenv("ELSEWHERE_SK", "sk-from-env")

    target = storage.endpoint_target(endpoint)

    assert (target.endpoint_url, target.access_key, target.secret_key) == ("http://backup.example:9000", "ak-from-env", "sk-from-env")
    stored = StorageEndpoint.objects.filter(pk=endpoint.pk).values().get()
    assert "ak-from-env" not in str(stored) and "sk-from-env" not in str(stored)
    monkeypatch.delenv("ELSEWHERE_SK")
    with pytest.raises(storage.EndpointMisconfigured, match="ELSEWHERE_SK is not set"):
        storage.endpoint_target(endpoint)


def test_sources_resolve_setting_references(make_policy):
    policy = make_policy(sources=("ingest", "media"))
    buckets = {source_place(s).bucket for s in policy.sources.all()}
    assert buckets == {settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA}
