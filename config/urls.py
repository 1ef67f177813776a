from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("core.urls")),
    path("events/", include(("pipeline.urls", "events"))),
    path("studio/", include(("studio.urls", "studio"))),
    path("ops/", include(("console.urls", "console"))),
    path("backups/", include(("backups.urls", "backups"))),
    path("security/", include(("security.urls", "security"))),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
]
