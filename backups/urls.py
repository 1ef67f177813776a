from django.urls import path

from backups import views

urlpatterns = [path("", views.home, name="home")]
