from django.urls import path

from console import views

urlpatterns = [
    path("", views.home, name="home"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/bulk/", views.jobs_bulk, name="jobs_bulk"),
    path("jobs/<int:job_id>/", views.job, name="job"),
    path("jobs/<int:job_id>/action/", views.job_action, name="job_action"),
    path("workers/", views.workers, name="workers"),
    path("workers/requeue/", views.failed_requeue, name="failed_requeue"),
    path("events/", views.events, name="events"),
]
