from django.contrib import admin

from hub.hfapi.models import Commit, Repo


class CommitInline(admin.TabularInline):
    model = Commit
    fields = ("sha", "title", "author", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("-created_at",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # commits come only through the Hub API, and never change


@admin.register(Repo)
class RepoAdmin(admin.ModelAdmin):
    list_display = ("repo_id", "private", "head", "created_by", "updated_at")
    list_filter = ("private",)
    search_fields = ("namespace", "name")
    readonly_fields = ("namespace", "name", "head", "created_by", "created_at", "updated_at")
    fields = ("namespace", "name", "private", "head", "created_by", "created_at", "updated_at")
    inlines = [CommitInline]
