"""manage.py backup_keys: the key-encryption keys of client-side backup encryption.

    manage.py backup_keys --check        # exit 1 with the reason when a key is missing or wrong
    manage.py backup_keys --new k2027    # print a new key for BACKUP_KEK (nothing is stored)
    manage.py backup_keys --rotate       # re-wrap every data key with BACKUP_KEK (no data copied)
"""

from django.core.management.base import BaseCommand, CommandError

from backups import crypto
from backups.services import keys


class Command(BaseCommand):
    help = "Check, create or rotate the key-encryption keys of encrypted backups."
    requires_system_checks = []  # --check reports the problems itself, and --new must work without a key

    def add_arguments(self, parser) -> None:
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--check", action="store_true")
        what.add_argument("--new", metavar="ID", help="print a new key with this id")
        what.add_argument("--rotate", action="store_true")

    def handle(self, *args, **options) -> None:
        if options["new"]:
            try:
                value = crypto.kek_generate(options["new"])
                crypto.kek_parse(value, variable="--new")
            except crypto.KeyError_ as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"BACKUP_KEK={value}")
            self.stdout.write("Keep a copy outside this machine: without it the encrypted backups cannot be read.")
            return
        if options["check"]:
            problems = keys.keys_problems()
            if problems:
                raise CommandError("\n".join(problems))
            current, keks = keys.keyring()
            self.stdout.write(f"keys ok: current {current.id if current else '(none)'}, known {', '.join(keks) or '(none)'}")
            return
        try:
            count = keys.keys_rotate()
        except keys.KeysUnusable as exc:
            raise CommandError(str(exc)) from None
        current, _ = keys.keyring()
        self.stdout.write(f"re-wrapped {count} data key(s) with {current.id}; older keys may now be retired")
