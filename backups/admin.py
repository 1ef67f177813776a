from django.contrib import admin

from backups.models import BackupPolicy, LegalHold, PolicySource, StorageEndpoint


@admin.register(StorageEndpoint)
class StorageEndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "access_key_env", "secret_key_env")


class PolicySourceInline(admin.TabularInline):
    model = PolicySource
    extra = 1


@admin.register(BackupPolicy)
class BackupPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "destination_bucket", "interval_minutes", "verify_mode", "retention_days")
    inlines = [PolicySourceInline]


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    """Release a hold by setting its released_at; its copies then expire under retention."""

    list_display = ("bucket", "prefix", "reason", "created_at", "released_at")
    list_filter = ("released_at",)
