import sys

from django.apps import AppConfig
from django.core import checks

# The commands that read or write backup copies: they refuse to start when a key is missing.
# Others (media workers, migrate) only warn: they never touch a copy.
BACKUP_COMMANDS = {"check", "backup_run", "restore", "backup_drill", "backup_forget", "runserver"}


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self) -> None:
        checks.register(encryption_keys_check)


def _handles_backups(argv: list[str]) -> bool:
    command = argv[1] if len(argv) > 1 else ""
    return command in BACKUP_COMMANDS or (command == "rqworker" and "backup" in argv[2:])


def encryption_keys_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse to start a process that handles backups (the backup worker, backup_run, restore,
    ...) when the environment's key-encryption keys cannot decrypt them: a lost key is found
    now, not at restore time. Other processes are warned."""
    from django.db import DatabaseError

    from backups.services.keys import keys_problems

    try:
        problems = keys_problems()
    except DatabaseError:
        return []  # no tables yet (before `migrate`): nothing is encrypted
    level = checks.Error if _handles_backups(sys.argv) else checks.Warning
    return [level(problem, hint="docs/backups.md, 'Encryption at rest'", id="backups.E001") for problem in problems]
