from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("core.urls")),
    path("", include(("ops.urls", "ops"))),
    path("events/", include(("pipeline.urls", "events"))),
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
