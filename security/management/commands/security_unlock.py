"""`manage.py security_unlock USERNAME`: lift every login lock of an account (all addresses and
devices). The way in when the reviewers who could lift it from the alert page are locked too."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from security.services.logins import account_unlock


class Command(BaseCommand):
    help = "Lift every login lock of an account."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, **options) -> None:
        try:
            lifted = account_unlock(username=options["username"], actor_label="manage.py security_unlock")
        except get_user_model().DoesNotExist:
            raise CommandError(f"no account named {options['username']!r}") from None
        self.stdout.write(f"{options['username']}: {lifted} lock(s) lifted")
