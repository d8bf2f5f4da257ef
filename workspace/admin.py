from django.contrib import admin, messages
from django.db import transaction

from workspace import audit, spend
from workspace.forms import BudgetAdminForm, ImageModelSpecAdminForm
from workspace.models import (
    ApiCall,
    AuditEvent,
    Budget,
    Image,
    ImageModelSpec,
    Job,
    LedgerEntry,
    Membership,
    OvernightBatch,
    Price,
    Project,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """For append-only records (the ledger, the audit trail): staff read them here, nobody edits them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AuditedAdmin(admin.ModelAdmin):
    """Saves and deletes through the admin go on the audit trail, with the values before and after.

    Subclasses name the fields worth recording, the actions, and the project an object belongs to.
    """

    audited_fields: tuple[str, ...] = ()
    changed_action = deleted_action = ""
    added_action = ""  # when adding differs from changing (a member added); else changed_action

    def audit_project(self, obj) -> Project | None:
        return None

    def save_model(self, request, obj, form, change) -> None:
        with transaction.atomic():
            old = type(obj).objects.filter(pk=obj.pk).first() if change and obj.pk else None
            super().save_model(request, obj, form, change)
            before = audit.fields_of(old, self.audited_fields) if old is not None else None
            after = audit.fields_of(obj, self.audited_fields)
            if before != after:
                audit.record(
                    actor=request.user,
                    action=self.added_action if old is None and self.added_action else self.changed_action,
                    target=obj,
                    before=before,
                    after=after,
                    project=self.audit_project(obj),
                )

    def delete_model(self, request, obj) -> None:
        with transaction.atomic():
            self._record_delete(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            for obj in queryset:
                self._record_delete(request, obj)
            super().delete_queryset(request, queryset)

    def _record_delete(self, request, obj) -> None:
        audit.record(
            actor=request.user,
            action=self.deleted_action,
            target=obj,
            before=audit.fields_of(obj, self.audited_fields),
            after=None,
            project=self.audit_project(obj),
        )


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
class MembershipAdmin(AuditedAdmin):
    audited_fields = ("project", "user", "role")
    added_action = audit.Action.MEMBER_ADDED
    changed_action = audit.Action.MEMBER_ROLE
    deleted_action = audit.Action.MEMBER_REMOVED

    def audit_project(self, obj) -> Project | None:
        return obj.project

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
class PriceAdmin(AuditedAdmin):
    audited_fields = ("model", "effective_from", *Price.RATE_FIELDS, "batch_factor", "note")
    changed_action = audit.Action.PRICE_CHANGED
    deleted_action = audit.Action.PRICE_DELETED

    list_display = ["model", "effective_from", *Price.RATE_FIELDS, "batch_factor", "note"]
    list_filter = ["model"]
    search_fields = ["model"]


@admin.register(ImageModelSpec)
class ImageModelSpecAdmin(admin.ModelAdmin):
    """The model registry: a new snapshot is a row added here (and a price, unless its family's applies)."""

    form = ImageModelSpecAdminForm
    list_display = [
        *("name", "label", "position", "custom_sizes", "gif", "svg"),
        *("markup", "streaming", "retired_on", "priced"),
    ]
    list_editable = ["position"]
    list_filter = ["gif", "svg", "markup", "custom_sizes"]
    search_fields = ["name", "label", "family"]
    fieldsets = [
        (None, {"fields": ["name", "label", "blurb", "family", "position"]}),
        (
            "Sizes",
            {
                "fields": [
                    "sizes",
                    "custom_sizes",
                    "size_multiple",
                    "min_pixels",
                    "max_pixels",
                    "max_edge",
                    "max_ratio",
                ]
            },
        ),
        (
            "Options",
            {"fields": ["qualities", "transparent", "input_fidelity", "complexity", "streaming", "batch"]},
        ),
        ("Outputs and edits", {"fields": ["gif", "svg", "svg_authors", "markup"]}),
        ("Retirement", {"fields": ["retired_on", "retired_note"]}),
    ]

    @admin.display(boolean=True, description="Priced")
    def priced(self, obj: ImageModelSpec) -> bool:
        return spend.price_for(obj.name) is not None

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if spend.price_for(obj.name) is None:
            messages.warning(
                request,
                f"{obj.name} has no price in force, so nobody can choose it yet: add a Price row for it "
                "(or set its family to a priced model).",
            )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Read-only: the ledger is append-only and written by workers alone."""

    list_display = [
        "created_at",
        "user",
        "project",
        "model",
        "part",
        "image_count",
        "total_tokens",
        "cost",
        "priced",
        "simulated",
        "batch",
        "request_id",
    ]
    list_filter = ["model", "part", "priced", "simulated", "batch", "created_at"]
    search_fields = ["request_id", "user__username", "project__name"]
    date_hierarchy = "created_at"
    list_select_related = ["user", "project"]


@admin.register(OvernightBatch)
class OvernightBatchAdmin(ReadOnlyAdmin):
    """Read-only: beat's overnight dispatcher writes these, and OpenAI's answers update them."""

    list_display = [
        "created_at",
        "project",
        "endpoint",
        "status",
        "line_count",
        "completed_count",
        "failed_count",
        "openai_batch_id",
        "collected_at",
    ]
    list_filter = ["status", "endpoint", "created_at"]
    search_fields = ["openai_batch_id", "input_file_id", "project__name"]
    list_select_related = ["project"]


@admin.register(Budget)
class BudgetAdmin(AuditedAdmin):
    """Staff usually set budgets on the spend dashboard; this form gives the same field errors."""

    form = BudgetAdminForm
    fields = ["scope", "user", "project", "monthly_limit"]
    audited_fields = ("user", "project", "monthly_limit")
    changed_action = audit.Action.BUDGET_CHANGED
    deleted_action = audit.Action.BUDGET_DELETED

    def audit_project(self, obj) -> Project | None:
        return obj.project

    list_display = ["__str__", "user", "project", "monthly_limit", "updated_at"]
    autocomplete_fields = ["user", "project"]
    search_fields = ["user__username", "project__name"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the trail is append-only and written by audit.record alone."""

    list_display = ["created_at", "actor_name", "action", "target_type", "target_id", "project_name"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor_name", "target_label", "project_name", "target_id"]
    date_hierarchy = "created_at"
