from django.urls import path

from studio import delivery_views as pages

urlpatterns = [
    path("<int:asset_id>/policy/", pages.policy, name="policy"),
    path("<int:asset_id>/takedown/", pages.takedown, name="takedown"),
    path("<int:asset_id>/delete/", pages.delete, name="delete"),
]
