from django.urls import path

from ops import views

urlpatterns = [path("metrics", views.metrics, name="metrics")]
