"""One-time-per-start setup of a running stack: buckets with CORS, roles, demo users."""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from core import s3
from core.services import demo_users_ensure, roles_sync


def demo_password(var_dir: Path) -> str:
    """REELFLOW_DEMO_PASSWORD, else one generated once and kept under var/."""
    if os.environ.get("REELFLOW_DEMO_PASSWORD"):
        return os.environ["REELFLOW_DEMO_PASSWORD"]
    path = var_dir / "demo-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(12) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


class Command(BaseCommand):
    help = "Create the S3 buckets (with CORS for the site), the role groups and the demo users."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-demo-users", action="store_true")

    def handle(self, *args, **options) -> None:
        buckets = [settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP]
        s3.buckets_ensure(buckets, cors_origins=[settings.SITE_URL, *settings.CSRF_TRUSTED_ORIGINS])
        self.stdout.write(f"buckets ready: {', '.join(buckets)}")
        roles_sync()
        if not options["no_demo_users"]:
            password = demo_password(settings.VAR_DIR)
            for name in demo_users_ensure(password=password):
                self.stdout.write(f"demo user: {name} / {password}")
