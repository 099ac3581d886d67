from django.contrib import admin

from hub.results.models import BenchmarkRun, EvalRun, Recovery


class ReadOnlyAdmin(admin.ModelAdmin):
    """Results are measurements: the admin shows them, it never edits them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EvalRun)
class EvalRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "model", "suite", "suite_version", "engine_version", "duration_s", "created_at")
    list_filter = ("suite", "suite_version", "engine_version")
    search_fields = ("base_model__name", "variant__name", "settings_key")


@admin.register(Recovery)
class RecoveryAdmin(ReadOnlyAdmin):
    list_display = (
        "variant_run",
        "task",
        "metric",
        "recovery",
        "recovery_low",
        "recovery_high",
        "threshold",
        "verdict",
        "documents_needed",
    )
    list_filter = ("verdict", "task", "metric")
    search_fields = ("variant_run__variant__name", "task")


@admin.register(BenchmarkRun)
class BenchmarkRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "model", "profile", "runnable", "engine_version", "created_at")
    list_filter = ("profile", "runnable", "engine_version")
    search_fields = ("base_model__name", "variant__name", "profile")
