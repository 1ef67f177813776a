from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Public API (v1) and API tokens"
    default_auto_field = "django.db.models.BigAutoField"
