"""Keep the role groups in step with the code after every migrate."""

from django.db.models.signals import post_migrate
from django.dispatch import receiver


@receiver(post_migrate)
def _sync_roles(sender, app_config=None, **kwargs) -> None:
    if app_config is not None and app_config.label == "core":
        from core.services import roles_sync

        roles_sync()
