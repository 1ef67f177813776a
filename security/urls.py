from django.urls import path

from security import views

urlpatterns = [
    path("", views.home, name="home"),
    path("violations/", views.violation_list, name="violations"),
    path("violations/export.csv", views.violation_export_csv, name="violations_csv"),
    path("violations/export.json", views.violation_export_json, name="violations_json"),
    path("violations/<int:violation_id>/", views.violation_detail, name="violation"),
    path(
        "violations/<int:violation_id>/acknowledge/",
        views.violation_acknowledge,
        name="violation_acknowledge",
    ),
    path("violations/<int:violation_id>/assign/", views.violation_assign, name="violation_assign"),
    path("violations/<int:violation_id>/resolve/", views.violation_resolve, name="violation_resolve"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="alert"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
    path("alerts/<int:alert_id>/resolve/", views.alert_resolve, name="alert_resolve"),
    path("responses/<int:response_id>/undo/", views.response_undo_view, name="response_undo"),
    path("inventory/", views.inventory, name="inventory"),
    path("policies/", views.policies, name="policies"),
    path("events/ec2/", views.ec2_events, name="ec2_events"),
]
