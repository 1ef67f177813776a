"""manage.py backup_drill --policy NAME [--assets N]: a restore drill now, in this process.

Restores a random sample of the policy's assets to a scratch prefix, verifies every byte, plays
each restored package (ffprobe of its master playlist) and reports the time to restore.
"""

from django.core.management.base import BaseCommand, CommandError

from backups.models import BackupPolicy, DrillState
from backups.services import drills


class Command(BaseCommand):
    help = "Run a restore drill of a backup policy now."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--policy", required=True)
        parser.add_argument("--assets", type=int, default=None, help="how many assets (default BACKUP_DRILL_ASSETS)")

    def handle(self, *args, **options) -> None:
        policy = BackupPolicy.objects.filter(name=options["policy"]).first()
        if policy is None:
            raise CommandError(f"no policy named {options['policy']!r}")
        try:
            drill = drills.drill_start(policy=policy, assets=options["assets"])
        except drills.DrillRefused as exc:
            raise CommandError(str(exc)) from None
        drill = drills.drill_execute(drill_id=drill.pk)
        for r in drill.results:
            outcome = f"plays ({r['frames']} frames)" if r["plays"] else f"FAILED: {r['error']}"
            self.stdout.write(f"  asset {r['asset']}: {r['objects']} object(s) in {r['seconds']:.2f} s, {outcome}")
        self.stdout.write(
            f"drill #{drill.pk}: {drill.get_state_display()} — {drill.objects_restored} object(s), "
            f"{drill.bytes_restored} bytes restored in {drill.seconds:.2f} s"
        )
        if drill.state != DrillState.SUCCEEDED:
            raise CommandError(drill.error)
