"""`manage.py security_fleet`: show or change what every worker is held to."""

from django.core.management.base import BaseCommand

from security.services.baseline import fleet_baseline_get, fleet_baseline_update


class Command(BaseCommand):
    help = "Show the fleet baseline; --rotate-token adopts this process's SECURITY_WORKER_TOKEN, --version sets the version."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rotate-token", action="store_true")
        parser.add_argument("--version", default="")

    def handle(self, *args, **options) -> None:
        if options["rotate_token"] or options["version"]:
            baseline = fleet_baseline_update(
                rotate_token=options["rotate_token"], version=options["version"] or None
            )
        else:
            baseline = fleet_baseline_get()
        self.stdout.write(
            f"fleet version: {baseline.version}\ntoken sha256: {baseline.token_sha256[:12]}…\n"
            f"set by {baseline.updated_by} at {baseline.updated_at:%Y-%m-%d %H:%M:%S} UTC"
        )
