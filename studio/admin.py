from django.contrib import admin

from studio.models import UploadSession


@admin.register(UploadSession)
class UploadSessionAdmin(admin.ModelAdmin):
    """Read-only: sessions change through studio.services (S3 holds the other half of the truth)."""

    list_display = ("filename", "publisher", "size", "parts_total", "state", "created_at", "expires_at")
    list_filter = ("state",)
    search_fields = ("filename", "publisher__username", "key")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
