"""Factories of backup rows: endpoints, policies, their sources, and ledger versions."""

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from backups.models import BackupPolicy, ObjectVersion, PolicySource, StorageEndpoint, VersionState


class StorageEndpointFactory(DjangoModelFactory):
    """An S3 server, one row per name: "platform" (no URL, no credentials) is the platform's own."""

    class Meta:
        model = StorageEndpoint
        django_get_or_create = ("name",)

    name = "platform"


class BackupPolicyFactory(DjangoModelFactory):
    """A policy copying to the platform's backup bucket, under a prefix of its own name."""

    class Meta:
        model = BackupPolicy

    name = factory.Sequence(lambda n: f"policy-{n}")
    destination_endpoint = factory.SubFactory(StorageEndpointFactory)
    destination_bucket = "${S3_BUCKET_BACKUP}"
    destination_prefix = factory.LazyAttribute(lambda policy: f"{policy.name}/")


class PolicySourceFactory(DjangoModelFactory):
    """A protected prefix of the ingest bucket on the platform's S3."""

    class Meta:
        model = PolicySource

    policy = factory.SubFactory(BackupPolicyFactory)
    endpoint = factory.SubFactory(StorageEndpointFactory)
    bucket = "${S3_BUCKET_INGEST}"
    prefix = factory.Sequence(lambda n: f"uploads/s{n}/")


class ObjectVersionFactory(DjangoModelFactory):
    """A ledger row of an object under its source's prefix, not copied yet; `protected=True`:
    copied (content-addressed, as the copier names copies) and verified when copied."""

    class Meta:
        model = ObjectVersion

    class Params:
        protected = factory.Trait(
            state=VersionState.PROTECTED,
            sha256=factory.Faker("sha256"),
            backup_bucket=factory.SelfAttribute("source.policy.destination_bucket"),
            backup_key=factory.LazyAttribute(
                lambda v: (
                    f"{v.source.policy.destination_prefix}sha256/{v.sha256[:2]}/{v.sha256[2:4]}/{v.sha256}"
                )
            ),
            copied_at=factory.LazyFunction(timezone.now),
            verified_at=factory.SelfAttribute("copied_at"),
        )

    source = factory.SubFactory(PolicySourceFactory)
    key = factory.LazyAttributeSequence(lambda v, n: f"{v.source.prefix}object-{n}")
    etag = factory.Faker("md5")
    size = factory.Faker("pyint", min_value=1, max_value=1_000_000)
