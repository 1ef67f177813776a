from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery: signed playback, embeds, downloads, takedown"
    default_auto_field = "django.db.models.BigAutoField"
