from django.contrib import admin

from core.models import Alert, Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "subject_type", "subject_id", "actor_label", "created_at"]
    list_filter = ["type"]
    search_fields = ["subject_id", "actor_label"]
    raw_id_fields = ["actor", "owner"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "severity", "title", "state", "occurrences", "last_seen_at"]
    list_filter = ["source", "severity", "state"]
    raw_id_fields = ["acknowledged_by"]
