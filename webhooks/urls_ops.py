"""Operations pages, under /ops/webhooks/ (namespace "webhooks_ops")."""

from django.urls import path

from webhooks import views

urlpatterns = [
    path("", views.ops_endpoints, name="endpoints"),
    path("<int:endpoint_id>/", views.ops_endpoint, name="endpoint"),
    path("deliveries/", views.ops_deliveries, name="deliveries"),
    path("deliveries/<int:delivery_id>/", views.ops_delivery, name="delivery"),
    path("deliveries/<int:delivery_id>/redeliver/", views.ops_delivery_redeliver, name="delivery_redeliver"),
]
