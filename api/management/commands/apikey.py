"""`manage.py apikey create USERNAME [--name N] [--scope read|write]` prints a new API token once;
`manage.py apikey list USERNAME` and `manage.py apikey revoke PREFIX`."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from api import services
from api.models import ApiToken, TokenScope


class Command(BaseCommand):
    help = "Create, list or revoke API tokens."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token and print it (once)")
        create.add_argument("username")
        create.add_argument("--name", default="command line")
        create.add_argument("--scope", default=TokenScope.WRITE, choices=TokenScope.values)
        listing = sub.add_parser("list", help="a publisher's tokens")
        listing.add_argument("username")
        revoke = sub.add_parser("revoke", help="revoke a token by its prefix (the 8 characters after rf_)")
        revoke.add_argument("prefix")

    def handle(self, *args, action: str, **options) -> None:
        if action == "revoke":
            token = ApiToken.objects.filter(prefix=options["prefix"]).first()
            if token is None:
                raise CommandError(f"no token with prefix {options['prefix']!r}")
            services.token_revoke(token=token, actor=None)
            self.stdout.write(f"revoked {token.prefix} ({token.name})")
            return
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        if action == "list":
            for token in ApiToken.objects.filter(publisher=user):
                state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
                used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                self.stdout.write(f"rf_{token.prefix}_…  {token.scope:<5}  {state:<24} last used {used}  {token.name}")
            return
        try:
            _, raw = services.token_create(publisher=user, name=options["name"], scope=options["scope"])
        except services.TokenRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(raw)
        self.stderr.write("Keep this token now: it is not shown again (Reelflow stores only its hash).")
