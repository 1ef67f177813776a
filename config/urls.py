from django.contrib import admin
from django.urls import include, path

from api.v1.api import api as api_v1

urlpatterns = [
    path("", include("core.urls")),
    path("", include(("ops.urls", "ops"))),
    path("events/", include(("pipeline.urls", "events"))),
    path("api/v1/", api_v1.urls),
    path("studio/api-tokens/", include(("api.urls", "api_tokens"))),
    path("studio/delivery/", include(("studio.urls_delivery", "delivery_pages"))),
    path("", include(("delivery.urls", "delivery"))),
    path("studio/webhooks/", include(("webhooks.urls", "webhooks"))),
    path("studio/", include(("studio.urls", "studio"))),
    path("ops/notifications/", include(("notifications.urls", "notifications"))),
    path("ops/webhooks/", include(("webhooks.urls_ops", "webhooks_ops"))),
    path("ops/", include(("console.urls", "console"))),
    path("backups/", include(("backups.urls", "backups"))),
    path("security/", include(("security.urls", "security"))),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
]
