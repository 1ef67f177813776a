from django.urls import path

from api import views

urlpatterns = [
    path("", views.home, name="home"),
    path("new/", views.token_new, name="token_new"),
    path("<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("embeds/", views.embed_origins, name="embed_origins"),
]
