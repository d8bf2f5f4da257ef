"""Projects and their people: the project list, creating, renaming, archiving, and members."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from workspace import projects, webhooks
from workspace.access import project_access
from workspace.forms import AddMemberForm, ChangeRoleForm, ProjectForm, WebhookForm
from workspace.models import Image, Job, Membership, Project, Role


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    latest = Image.objects.visible().filter(project=OuterRef("pk")).order_by("-created_at", "-id")
    image_counts = (
        Image.objects.filter(project=OuterRef("pk"))
        .order_by()
        .values("project")
        .annotate(n=Count("id"))
        .values("n")
    )
    newest_job = Job.objects.filter(project=OuterRef("pk")).order_by("-created_at")
    listed = (
        Project.objects.for_user(request.user)
        .annotate(
            # Subqueries, not joins: joining images and jobs at once multiplies their rows per project.
            image_count=Coalesce(Subquery(image_counts), 0),
            last_activity=Subquery(newest_job.values("created_at")[:1]),
            cover_id=Subquery(latest.values("pk")[:1]),
        )
        .order_by("archived_at", "-last_activity", "name")
    )
    return render(request, "workspace/home.html", {"projects": listed, "form": ProjectForm()})


@login_required
@require_POST
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST)
    if not form.is_valid():
        listed = Project.objects.for_user(request.user)
        return render(request, "workspace/home.html", {"projects": listed, "form": form}, status=400)
    project = projects.project_create(name=form.cleaned_data["name"], user=request.user)
    return redirect(project)


@login_required
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER)
    form = ProjectForm(request.POST or None, instance=access.project)
    if request.method == "POST" and form.is_valid():
        projects.project_rename(project=access.project, name=form.cleaned_data["name"])
        messages.success(request, "Project renamed.")
        return redirect("project_settings", project_id)
    return render_settings(request, access, form=form, status=400 if form.errors else 200)


def render_settings(
    request: HttpRequest,
    access,
    *,
    form: ProjectForm | None = None,
    webhook_form: WebhookForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The settings page, with either form carrying its errors (views/webhooks.py re-renders it too)."""
    return render(
        request,
        "workspace/project_settings.html",
        {
            "form": form or ProjectForm(instance=access.project),
            "project": access.project,
            "access": access,
            "webhook_form": webhook_form or WebhookForm(),
            "endpoints": webhooks.endpoints_for_settings(project=access.project),
        },
        status=status,
    )


@login_required
@require_POST
def project_archive(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER)
    project = projects.project_archive(project=access.project, archived=not access.project.is_archived)
    messages.success(request, "Project archived." if project.is_archived else "Project restored.")
    return redirect("project_settings", project_id)


@login_required
def members(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    form = AddMemberForm(request.POST or None, project=access.project)
    status = 200
    if request.method == "POST":
        access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
        if form.is_valid():
            try:
                projects.member_add(
                    project=access.project,
                    user=form.cleaned_data["who"],
                    role=form.cleaned_data["role"],
                    actor=request.user,
                )
            except projects.MembershipRefused as refusal:
                form.add_error("who", str(refusal))
            else:
                messages.success(request, f"{form.cleaned_data['who'].get_username()} added.")
                return redirect("members", project_id)
        status = 400
    memberships = list(access.project.memberships.select_related("user").order_by("user__username"))
    return render(
        request,
        "workspace/members.html",
        {
            "project": access.project,
            "access": access,
            "rows": [(m, ChangeRoleForm.for_member(m)) for m in memberships],
            "form": form,
            "owner_count": sum(1 for m in memberships if m.role == Role.OWNER),
        },
        status=status,
    )


@login_required
@require_POST
def member_role(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
    form = ChangeRoleForm(request.POST)
    if not form.is_valid():
        get_object_or_404(Membership, project=access.project, pk=membership_id)  # another project's: 404
        messages.error(request, "Choose owner, editor or viewer.")
        return redirect("members", project_id)
    try:
        membership = projects.member_set_role(
            project=access.project,
            membership_id=membership_id,
            role=form.cleaned_data["role"],
            actor=request.user,
        )
    except Membership.DoesNotExist:
        raise Http404 from None
    except projects.MembershipRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(
            request, f"{membership.user.get_username()} is now {membership.get_role_display().lower()}."
        )
    return redirect("members", project_id)


@login_required
@require_POST
def member_remove(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
    try:
        membership = projects.member_remove(
            project=access.project, membership_id=membership_id, actor=request.user
        )
    except Membership.DoesNotExist:
        raise Http404 from None
    except projects.MembershipRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{membership.user.get_username()} removed.")
    return redirect("members", project_id)
