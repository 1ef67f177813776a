"""`manage.py seed_demo --jobs 10000`: fake but realistic operations data (see console.demo)."""

import time

from django.core.management.base import BaseCommand, CommandParser

from console.demo import demo_data_seed


class Command(BaseCommand):
    help = "Write demo encode jobs (about 40 units each), events and queue samples. Nothing is encoded."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=1000, help="how many jobs (default 1000)")
        parser.add_argument("--publishers", type=int, default=40, help="demo publishers the jobs belong to")
        parser.add_argument("--days", type=int, default=30, help="spread the jobs over this many days")
        parser.add_argument("--seed", type=int, default=1, help="random seed (the same seed gives the same data)")

    def handle(self, *args, jobs: int, publishers: int, days: int, seed: int, **options) -> None:
        if jobs < 1 or publishers < 1 or days < 1:
            self.stderr.write("--jobs, --publishers and --days must be at least 1")
            raise SystemExit(2)
        started = time.monotonic()

        def progress(report) -> None:
            if report.jobs % 2000 == 0 or report.jobs == jobs:
                self.stdout.write(f"  {report.jobs:>6} jobs, {report.units:>7} units ({time.monotonic() - started:.0f} s)")

        report = demo_data_seed(jobs=jobs, publishers=publishers, days=days, seed=seed, progress=progress)
        states = ", ".join(f"{state} {n}" for state, n in sorted(report.by_state.items(), key=lambda kv: -kv[1]))
        self.stdout.write(self.style.SUCCESS(
            f"Seeded {report.jobs} jobs ({states}), {report.units} units, {report.events} events for "
            f"{report.publishers} publishers in {time.monotonic() - started:.1f} s."
        ))
