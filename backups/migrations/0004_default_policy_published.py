"""The default policy also protects the published packages (media bucket, published/: master
and media playlists, the DASH manifest, segments, sprites and their VTT), so everything a viewer
needs comes back with `restore --asset`. Renditions (content-addressed by their parameters) and
published packages are marked write-once: a changed object there is flagged, not taken as a change.
"""

from django.db import migrations

PUBLISHED = "published/"
WRITE_ONCE = {"assets/": "assets/*/jobs/*/renditions/*", PUBLISHED: "published/*"}


def extend(apps, schema_editor):
    BackupPolicy = apps.get_model("backups", "BackupPolicy")
    PolicySource = apps.get_model("backups", "PolicySource")
    StorageEndpoint = apps.get_model("backups", "StorageEndpoint")
    policy = BackupPolicy.objects.filter(name="default").first()
    if policy is None:
        return
    platform, _ = StorageEndpoint.objects.get_or_create(name="platform")
    PolicySource.objects.get_or_create(
        policy=policy, endpoint=platform, bucket="${S3_BUCKET_MEDIA}", prefix=PUBLISHED,
    )
    for prefix, pattern in WRITE_ONCE.items():
        PolicySource.objects.filter(
            policy=policy, bucket="${S3_BUCKET_MEDIA}", prefix=prefix, write_once_patterns=""
        ).update(write_once_patterns=pattern)
    if policy.description == "Source uploads and published media, copied to the backup bucket.":
        policy.description = "Source uploads, renditions and published packages, copied to the backup bucket."
        policy.save(update_fields=["description"])


def shrink(apps, schema_editor):
    PolicySource = apps.get_model("backups", "PolicySource")
    PolicySource.objects.filter(
        policy__name="default", bucket="${S3_BUCKET_MEDIA}", prefix=PUBLISHED, versions__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("backups", "0003_write_once_and_references")]

    operations = [migrations.RunPython(extend, shrink)]
