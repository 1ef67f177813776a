"""The default policy: protect the source uploads (ingest bucket, uploads/) and the published
media (media bucket, assets/), copied to the backup bucket on the platform's own S3.

Buckets are references to settings ("${S3_BUCKET_...}") and the endpoint has no URL or
credential variables, so the policy follows the environment instead of freezing it here.
"""

from django.db import migrations


def create(apps, schema_editor):
    StorageEndpoint = apps.get_model("backups", "StorageEndpoint")
    BackupPolicy = apps.get_model("backups", "BackupPolicy")
    PolicySource = apps.get_model("backups", "PolicySource")
    platform, _ = StorageEndpoint.objects.get_or_create(name="platform")
    policy, created = BackupPolicy.objects.get_or_create(
        name="default",
        defaults={
            "description": "Source uploads and published media, copied to the backup bucket.",
            "destination_endpoint": platform,
            "destination_bucket": "${S3_BUCKET_BACKUP}",
            "destination_prefix": "default/",
            "interval_minutes": 60,
            "verify_mode": "sampled",
            "verify_within_days": 7,
            "verify_source": True,
            "retention_days": 30,
        },
    )
    if created:
        PolicySource.objects.create(policy=policy, endpoint=platform, bucket="${S3_BUCKET_INGEST}", prefix="uploads/")
        PolicySource.objects.create(policy=policy, endpoint=platform, bucket="${S3_BUCKET_MEDIA}", prefix="assets/")


def remove(apps, schema_editor):
    BackupPolicy = apps.get_model("backups", "BackupPolicy")
    BackupPolicy.objects.filter(name="default", runs__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("backups", "0001_initial")]

    operations = [migrations.RunPython(create, remove)]
