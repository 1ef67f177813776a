"""manage.py backup_run --policy NAME: run a backup policy in this process, to the end.

If the policy has an unfinished run whose process is gone (killed, crashed), this continues
it where it stopped instead of starting over.
"""

from django.core.management.base import BaseCommand, CommandError

from backups.models import BackupPolicy, BackupRun, RunState, RunTrigger, RunVerify
from backups.services import runs
from backups.services.common import process_label


class Command(BaseCommand):
    help = "Run (or resume) a backup policy: find changes, copy, verify, apply retention."

    def add_arguments(self, parser):
        parser.add_argument("--policy", required=True, help="the policy's name")
        parser.add_argument("--verify", choices=RunVerify.values, default=RunVerify.PLAN)
        parser.add_argument("--workers", type=int, default=None, help="parallel transfers (default BACKUP_COPY_CONCURRENCY)")
        parser.add_argument("--prefix", action="append", default=[], help="only this source prefix (repeatable)")

    def handle(self, *args, **options):
        try:
            policy = BackupPolicy.objects.get(name=options["policy"])
        except BackupPolicy.DoesNotExist:
            names = ", ".join(BackupPolicy.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no policy named {options['policy']!r} (policies: {names})") from None
        scope = [
            {"source": source.pk, "prefix": prefix}
            for prefix in options["prefix"]
            for source in policy.sources.all()
            if prefix.startswith(source.prefix)
        ]
        if options["prefix"] and not scope:
            raise CommandError("no source of this policy covers those prefixes")
        active = BackupRun.objects.filter(policy=policy, finished_at__isnull=True).first()
        if active is not None:
            self.stdout.write(f"resuming run #{active.pk} (phase {active.phase}, left by {active.owner or 'nobody'})")
            run = active
        else:
            run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND, verify=options["verify"], scope=scope)
            self.stdout.write(f"run #{run.pk} of {policy.name} started")
        result = runs.run_execute(run_id=run.pk, owner=process_label(), concurrency=options["workers"])
        if result is None:
            run.refresh_from_db()
            if run.finished_at is None:
                raise CommandError(f"run #{run.pk} is being driven by {run.owner}; not touching it")
            result = run
        self.stdout.write(
            f"run #{result.pk}: {result.get_state_display()} — scanned {result.objects_scanned}, "
            f"new {result.objects_new}, changed {result.objects_changed}, deleted {result.objects_deleted}, "
            f"copied {result.objects_copied} ({result.bytes_copied} bytes, {result.objects_deduplicated} deduplicated), "
            f"verified {result.objects_verified}, failed {result.objects_failed}, repaired {result.objects_repaired} "
            f"in {result.duration_seconds:.1f} s"
        )
        if result.state == RunState.FAILED:
            raise CommandError(result.error or "the run failed")
        if result.state == RunState.PARTIAL:
            raise CommandError("the run finished with unrepaired failures; see its page")
