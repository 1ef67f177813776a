from django.urls import path

from notifications import views

urlpatterns = [
    path("", views.home, name="home"),
    path("channels/", views.channel_add, name="channel_add"),
    path("channels/<int:channel_id>/test/", views.channel_test, name="channel_test"),
    path("channels/<int:channel_id>/delete/", views.channel_delete, name="channel_delete"),
    path("routes/", views.route_add, name="route_add"),
    path("routes/<int:route_id>/delete/", views.route_delete, name="route_delete"),
]
