"""manage.py backup_forget: what retention would forget, and why (a dry run unless --apply).

    manage.py backup_forget --policy default            # list what goes and what stays, with reasons
    manage.py backup_forget --policy default --apply    # forget it now (as a run's prune phase does)
"""

from django.core.management.base import BaseCommand, CommandError

from backups.models import BackupPolicy, RunTrigger, RunVerify
from backups.services import retention, runs


class Command(BaseCommand):
    help = "Dry-run (or apply) a policy's retention: every old version, kept or forgotten, and why."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--policy", required=True)
        parser.add_argument("--apply", action="store_true", help="forget what the plan lets go (a whole run)")

    def handle(self, *args, **options) -> None:
        policy = BackupPolicy.objects.filter(name=options["policy"]).first()
        if policy is None:
            raise CommandError(f"no policy named {options['policy']!r}")
        plan = retention.retention_plan(policy=policy)
        keep = retention.schedule_of(policy)
        rule = keep.describe() if not keep.empty else f"versions that left the source over {policy.retention_days} days ago go"
        self.stdout.write(f"policy {policy.name}: {rule}")
        for verdict in plan:
            mark = "keep  " if verdict.keep else "forget"
            why = ", ".join(verdict.reasons) if verdict.keep else "no rule keeps it"
            self.stdout.write(f"  {mark} {verdict.key} @ {verdict.label} ({verdict.first_seen_at:%Y-%m-%d %H:%M}) — {why}")
        going = sum(1 for v in plan if not v.keep)
        self.stdout.write(f"{going} version(s) would be forgotten, {len(plan) - going} kept")
        if options["apply"]:
            try:
                run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND, verify=RunVerify.NONE)
            except runs.RunAlreadyActive as exc:
                raise CommandError(str(exc)) from None
            done = runs.run_execute(run_id=run.pk)
            self.stdout.write(f"run #{done.pk}: {done.get_state_display()}, {done.versions_pruned} version(s) forgotten")
