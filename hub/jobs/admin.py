from django.contrib import admin, messages

from hub.jobs.models import Job, Recipe, Stage


@admin.register(Recipe)
class RecipeAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "preset", "scheme", "created_at")
    list_filter = ("preset", "scheme")
    search_fields = ("name", "description")


class StageInline(admin.TabularInline):
    model = Stage
    extra = 0
    can_delete = False
    fields = ("kind", "recipe", "status", "progress", "message", "attempt", "worker", "started_at", "finished_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "base_model", "status", "suite", "benchmark_profile", "owner", "created_at", "finished_at")
    list_filter = ("status", "suite", "benchmark_profile", "private")
    search_fields = ("base_model__name", "owner__username", "error")
    readonly_fields = ("status", "error", "versions", "cancel_requested", "created_at", "started_at", "finished_at")
    inlines = [StageInline]
    actions = ["cancel_jobs"]

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset) -> None:
        for job in queryset:
            job.cancel()
        self.message_user(request, f"cancelled {queryset.count()} job(s)", messages.SUCCESS)


@admin.register(Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "kind", "recipe", "status", "progress", "message", "attempt", "finished_at")
    list_filter = ("status", "kind", "queue")
    search_fields = ("job__base_model__name", "message", "error")
    readonly_fields = (
        "job",
        "kind",
        "recipe",
        "queue",
        "status",
        "progress",
        "message",
        "attempt",
        "worker",
        "error",
        "log",
        "outputs",
        "enqueued_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
    )
    exclude = ("depends_on",)
    actions = ["retry_stages"]

    @admin.action(description="Retry selected stages (and what they stopped)")
    def retry_stages(self, request, queryset) -> None:
        for stage in queryset:
            try:
                stage.retry()
            except ValueError as exc:
                self.message_user(request, str(exc), messages.ERROR)
