from django.urls import path

from delivery import views

urlpatterns = [
    path("play/<str:playback_id>/<str:token>/<str:name>", views.play, name="play"),
    path("play/<str:playback_id>/<str:token>/download/<slug:rung>.mp4", views.download, name="download"),
    path("embed/<str:playback_id>", views.embed, name="embed"),
    path("oembed", views.oembed, name="oembed"),
]
