from django.contrib import admin

from hub.catalog.models import BaseModel, Publication, Variant


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "architecture", "num_parameters", "dtype", "license", "created_at")
    list_filter = ("status", "architecture", "dtype", "private")
    search_fields = ("name", "hf_repo_id", "resolved_sha")
    readonly_fields = ("resolved_sha", "local_path", "num_parameters", "size_bytes", "config", "files", "fetched_at")


class PublicationInline(admin.TabularInline):
    model = Publication
    extra = 0
    readonly_fields = ("endpoint", "repo_id", "commit_sha", "url", "created_at")


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ("name", "base", "recipe", "scheme", "gate", "size_bytes", "created_at")
    list_filter = ("gate", "scheme", "private")
    search_fields = ("name", "base__name", "recipe__name")
    readonly_fields = ("local_path", "files", "size_bytes", "compression_report", "gate_report", "job")
    inlines = [PublicationInline]
