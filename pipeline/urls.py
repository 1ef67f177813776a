from django.urls import path

from pipeline import views

urlpatterns = [path("s3/", views.s3_events, name="s3")]
