from django.contrib import admin

from workspace.forms import BudgetAdminForm
from workspace.models import ApiCall, Budget, Image, Job, LedgerEntry, Membership, Price, Project


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


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["model", "effective_from", *Price.RATE_FIELDS, "note"]
    list_filter = ["model"]
    search_fields = ["model"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """Read-only: the ledger is append-only and written by workers alone."""

    list_display = [
        "created_at",
        "user",
        "project",
        "model",
        "image_count",
        "total_tokens",
        "cost",
        "priced",
        "simulated",
        "request_id",
    ]
    list_filter = ["model", "priced", "simulated", "created_at"]
    search_fields = ["request_id", "user__username", "project__name"]
    date_hierarchy = "created_at"
    list_select_related = ["user", "project"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Staff usually set budgets on the spend dashboard; this form gives the same field errors."""

    form = BudgetAdminForm
    fields = ["scope", "user", "project", "monthly_limit"]
    list_display = ["__str__", "user", "project", "monthly_limit", "updated_at"]
    autocomplete_fields = ["user", "project"]
    search_fields = ["user__username", "project__name"]
