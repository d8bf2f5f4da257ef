from django.contrib import admin

from workspace.models import ApiCall, Image, Job, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_by", "created_at", "archived_at"]
    list_filter = ["archived_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["project__name", "user__username", "user__email"]


class ApiCallInline(admin.TabularInline):
    model = ApiCall
    extra = 0
    can_delete = False
    fields = ["attempt", "outcome", "http_status", "request_id", "latency_ms", "error_code", "total_tokens"]
    readonly_fields = fields


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "author",
        "model",
        "size",
        "quality",
        "n",
        "status",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "model", "quality", "kind"]
    search_fields = ["prompt", "author__username", "project__name"]
    date_hierarchy = "created_at"
    raw_id_fields = ["project", "author"]
    inlines = [ApiCallInline]


@admin.register(ApiCall)
class ApiCallAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "job",
        "attempt",
        "outcome",
        "http_status",
        "latency_ms",
        "total_tokens",
        "created_at",
    ]
    list_filter = ["outcome", "http_status", "endpoint"]
    search_fields = ["request_id"]
    raw_id_fields = ["job"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "job", "index", "width", "height", "format", "bytes", "created_at"]
    list_filter = ["format"]
    raw_id_fields = ["job", "project"]
