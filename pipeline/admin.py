from django.contrib import admin

from pipeline.models import (
    Artifact,
    Asset,
    AudioRenditionSpec,
    EncodeJob,
    IngestEvent,
    Profile,
    Rendition,
    VideoRenditionSpec,
)


class VideoSpecInline(admin.TabularInline):
    model = VideoRenditionSpec
    extra = 0


class AudioSpecInline(admin.TabularInline):
    model = AudioRenditionSpec
    extra = 0


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_active"]
    inlines = [VideoSpecInline, AudioSpecInline]


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "publisher", "state", "duration_s", "created_at"]
    list_filter = ["state"]
    search_fields = ["title", "source_key"]
    list_select_related = ["publisher"]
    raw_id_fields = ["publisher"]


class RenditionInline(admin.TabularInline):
    model = Rendition
    extra = 0
    fields = ["name", "kind", "width", "height", "state", "units_done", "units_total", "frame_count"]
    readonly_fields = fields
    can_delete = False


@admin.register(EncodeJob)
class EncodeJobAdmin(admin.ModelAdmin):
    list_display = ["id", "asset", "profile", "state", "created_at", "finished_at"]
    list_filter = ["state", "profile"]
    list_select_related = ["asset", "profile"]
    raw_id_fields = ["asset"]
    inlines = [RenditionInline]


@admin.register(IngestEvent)
class IngestEventAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "key", "version", "outcome", "received_at"]
    list_filter = ["source"]
    search_fields = ["key"]
    raw_id_fields = ["job"]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "kind", "key", "step", "created_at"]
    list_filter = ["kind"]
    search_fields = ["key"]
    raw_id_fields = ["job", "parents"]
