"""Publisher pages, under /studio/webhooks/ (namespace "webhooks")."""

from django.urls import path

from webhooks import views

urlpatterns = [
    path("", views.endpoints, name="endpoints"),
    path("new/", views.endpoint_new, name="endpoint_new"),
    path("<int:endpoint_id>/", views.endpoint, name="endpoint"),
    path("<int:endpoint_id>/edit/", views.endpoint_edit, name="endpoint_edit"),
    path("<int:endpoint_id>/rotate/", views.endpoint_rotate, name="endpoint_rotate"),
    path("<int:endpoint_id>/disable/", views.endpoint_disable, name="endpoint_disable"),
    path("<int:endpoint_id>/enable/", views.endpoint_enable, name="endpoint_enable"),
    path("<int:endpoint_id>/ping/", views.endpoint_ping, name="endpoint_ping"),
    path("<int:endpoint_id>/delete/", views.endpoint_delete, name="endpoint_delete"),
    path("deliveries/<int:delivery_id>/", views.delivery, name="delivery"),
    path("deliveries/<int:delivery_id>/redeliver/", views.delivery_redeliver, name="delivery_redeliver"),
]
