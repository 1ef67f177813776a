from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications (alerts to email, chat, SNS, webhooks)"

    def ready(self) -> None:
        from core.services import alert_sink_register
        from notifications.services import alert_changed

        # Every alert source raises through core.services.alert_raise; this routes them all.
        alert_sink_register(alert_changed)
