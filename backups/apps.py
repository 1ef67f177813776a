from django.apps import AppConfig
from django.core import checks


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self) -> None:
        checks.register(encryption_keys_check)


def encryption_keys_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse to start (every manage.py command, the workers included) when the environment's
    key-encryption keys cannot decrypt the backups: a lost key is found now, not at restore."""
    from django.db import DatabaseError

    from backups.services.keys import keys_problems

    try:
        problems = keys_problems()
    except DatabaseError:
        return []  # no tables yet (before `migrate`): nothing is encrypted
    return [
        checks.Error(problem, hint="docs/backups.md, 'Encryption at rest'", id="backups.E001") for problem in problems
    ]
