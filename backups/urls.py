from django.urls import path

from backups import views

urlpatterns = [
    path("", views.home, name="home"),
    path("policies/<int:policy_id>/", views.policy_detail, name="policy_detail"),
    path("policies/<int:policy_id>/hold/", views.legal_hold, name="legal_hold"),
    path("runs/", views.run_list, name="runs"),
    path("runs/start/", views.run_start, name="run_start"),
    path("runs/export.csv", views.runs_csv, name="runs_csv"),
    path("runs/export.json", views.runs_json, name="runs_json"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/export.json", views.run_json, name="run_json"),
    path("runs/<int:run_id>/failures.csv", views.run_failures_csv, name="run_failures_csv"),
    path("failures/<int:failure_id>/retry/", views.failure_retry, name="failure_retry"),
    path("restore/", views.restore_new, name="restore_new"),
    path("restores/<int:restore_id>/", views.restore_detail, name="restore_detail"),
    path("events/s3/", views.s3_events, name="s3_events"),
]
