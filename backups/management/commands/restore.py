"""manage.py restore: restore one object, a prefix or one asset from a backup policy.

    manage.py restore --policy default --key uploads/alice/clip.mp4 --yes
    manage.py restore --policy default --asset 42 --to-bucket reelflow-media --to-prefix restored/
    manage.py restore --policy default --prefix assets/42/ --as-of 2026-01-31T12:00
    manage.py restore --policy default --key uploads/alice/clip.mp4 --version-id 3HL4kqtJlcpXroDTDmJ --yes

Every written object is read back and checked against the ledger's SHA-256.
"""

from datetime import UTC

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from backups.models import BackupPolicy, RestoreScope, RestoreState, StorageEndpoint
from backups.services import restore as restore_service


class Command(BaseCommand):
    help = "Restore objects from backup, verified by SHA-256 after writing."

    def add_arguments(self, parser):
        parser.add_argument("--policy", required=True)
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--key", help="one object")
        what.add_argument("--prefix", help="every object under a prefix")
        what.add_argument("--asset", type=int, help="an asset's media, published packages and source upload")
        parser.add_argument("--as-of", help="ISO date-time (UTC if no zone): the versions current then")
        parser.add_argument("--version-id", default="", help="with --key: that exact version (S3 version id or ETag)")
        parser.add_argument("--to-bucket", default="", help="restore here instead of the original place")
        parser.add_argument("--to-prefix", default="", help="put before each key (with --to-bucket)")
        parser.add_argument("--to-endpoint", default="", help="a storage endpoint's name (with --to-bucket)")
        parser.add_argument("--yes", action="store_true", help="confirm overwriting objects in their original place")
        parser.add_argument("--workers", type=int, default=None)

    def handle(self, *args, **options):
        try:
            policy = BackupPolicy.objects.get(name=options["policy"])
        except BackupPolicy.DoesNotExist:
            raise CommandError(f"no policy named {options['policy']!r}") from None
        if options["key"] is not None:
            scope, selector = RestoreScope.OBJECT, options["key"]
        elif options["prefix"] is not None:
            scope, selector = RestoreScope.PREFIX, options["prefix"]
        else:
            scope, selector = RestoreScope.ASSET, str(options["asset"])
        as_of = None
        if options["as_of"]:
            as_of = parse_datetime(options["as_of"])
            if as_of is None:
                raise CommandError(f"--as-of {options['as_of']!r} is not an ISO date-time")
            as_of = make_aware(as_of, UTC) if is_naive(as_of) else as_of
        if not options["to_bucket"] and not options["yes"]:
            raise CommandError("restoring to the original place replaces the objects there: add --yes, or use --to-bucket")
        endpoint = None
        if options["to_endpoint"]:
            endpoint = StorageEndpoint.objects.filter(name=options["to_endpoint"]).first()
            if endpoint is None:
                raise CommandError(f"no storage endpoint named {options['to_endpoint']!r}")
        try:
            planned = restore_service.restore_create(
                policy=policy, scope=scope, selector=selector, as_of=as_of, target_endpoint=endpoint,
                target_bucket=options["to_bucket"], target_prefix=options["to_prefix"], version_label=options["version_id"],
            )
        except restore_service.RestoreRejected as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"restore #{planned.pk}: {planned.objects_total} object(s)")
        done = restore_service.restore_execute(restore_id=planned.pk, concurrency=options["workers"])
        for item in done.items.order_by("pk"):
            mark = "ok " if item.state == "done" else "ERR"
            self.stdout.write(f"  {mark} {item.key} -> {item.target_bucket}/{item.target_key}{': ' + item.error if item.error else ''}")
        self.stdout.write(
            f"restore #{done.pk}: {done.get_state_display()} — {done.objects_done} restored and verified, "
            f"{done.objects_failed} failed, {done.bytes_restored} bytes"
        )
        if done.state != RestoreState.SUCCEEDED:
            raise CommandError("some objects were not restored; see above")
