from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Reelflow core"

    def ready(self) -> None:
        from core import signals  # noqa: F401
