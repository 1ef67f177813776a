from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Outgoing webhooks"

    def ready(self) -> None:
        from core.services import event_sink_register
        from webhooks.services import deliveries_create_for

        # Every recorded event becomes deliveries, in the transaction that records it.
        event_sink_register(deliveries_create_for)
