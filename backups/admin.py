from django.contrib import admin

from backups.models import BackupPolicy, PolicySource, StorageEndpoint


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
