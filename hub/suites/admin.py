from django.contrib import admin

from hub.suites.models import Suite


@admin.register(Suite)
class SuiteAdmin(admin.ModelAdmin):
    list_display = ("__str__", "private", "chat_template", "content_hash", "created_at")
    list_filter = ("private",)
    search_fields = ("name", "owner__username", "description")
    # a suite changes only through an upload, where it is checked, and never once a job used it
    readonly_fields = [f.name for f in Suite._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
