from django.urls import path

from console import rules_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/bulk/", views.jobs_bulk, name="jobs_bulk"),
    path("jobs/<int:job_id>/", views.job, name="job"),
    path("jobs/<int:job_id>/action/", views.job_action, name="job_action"),
    path("workers/", views.workers, name="workers"),
    path("workers/requeue/", views.failed_requeue, name="failed_requeue"),
    path("events/", views.events, name="events"),
    path("jobs/<int:job_id>/review/", rules_views.job_review, name="job_review"),
    path("rules/", rules_views.rules, name="rules"),
    path("rules/sets/<int:rule_set_id>/", rules_views.rule_set, name="rule_set"),
    path("rules/<int:rule_id>/", rules_views.rule_edit, name="rule_edit"),
    path("publishers/<int:user_id>/verify/", rules_views.publisher_verify, name="publisher_verify"),
]
