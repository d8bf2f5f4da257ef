"""Brand kits and prompt templates: lists, forms (each save is a new version), old versions, previews."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from workspace import kits, prompting
from workspace.access import ProjectAccess, project_access
from workspace.campaign_forms import BrandKitForm, TemplateForm, defaults_from, template_preview
from workspace.campaign_models import BrandKit, BrandKitVersion, PromptTemplate, TemplateVersion
from workspace.models import Role
from workspace.views._common import parse_id


def _kit(access: ProjectAccess, kit_id: int) -> BrandKit:
    return get_object_or_404(BrandKit, project=access.project, pk=kit_id)


def _template(access: ProjectAccess, template_id: int) -> PromptTemplate:
    return get_object_or_404(PromptTemplate, project=access.project, pk=template_id)


# Brand kits.


@login_required
@require_GET
def kit_list(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    items = [
        (kit, kit.latest)
        for kit in BrandKit.objects.filter(project=access.project).select_related("created_by")
    ]
    context = {"project": access.project, "access": access, "items": items}
    return render(request, "workspace/kits.html", context)


def _kit_form_page(
    request: HttpRequest, access: ProjectAccess, form: BrandKitForm, kit: BrandKit | None, status: int = 200
) -> HttpResponse:
    context = {
        "project": access.project,
        "access": access,
        "form": form,
        "kit": kit,
        "preview": _kit_preview(form),
    }
    return render(request, "workspace/kit_form.html", context, status=status)


def _kit_preview(form: BrandKitForm) -> str:
    if form.is_bound:
        form.is_valid()
        sample = form.cleaned_data.get("sample_prompt") or ""
        kit = form.preview_kit()
    else:
        sample = form.initial.get("sample_prompt") or form.fields["sample_prompt"].initial
        kit = BrandKitVersion(
            style_words=form.initial.get("style_words", ""),
            art_direction=form.initial.get("art_direction", ""),
            palette=form.initial.get("palette", "").split(),
            avoid=form.initial.get("avoid", ""),
        )
    return prompting.compose_with_kit(sample or "(your prompt)", kit)


def _kit_save(request: HttpRequest, access: ProjectAccess, kit: BrandKit | None) -> HttpResponse:
    form = BrandKitForm(request.POST, project=access.project)
    if not form.is_valid():
        return _kit_form_page(request, access, form, kit, status=400)
    data = form.cleaned_data
    version = kits.kit_save(
        project=access.project,
        author=request.user,
        kit=kit,
        name=data["name"],
        style_words=data["style_words"],
        art_direction=data["art_direction"],
        palette=data["palette"],
        avoid=data["avoid"],
        defaults=defaults_from(data),
        references=list(data["references"]),
    )
    messages.success(request, f"Saved {version.kit.name}, version {version.number}.")
    return redirect(version.kit)


@login_required
def kit_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=request.method == "POST")
    if request.method == "POST":
        return _kit_save(request, access, None)
    return _kit_form_page(request, access, BrandKitForm(project=access.project), None)


@login_required
def kit_edit(request: HttpRequest, project_id: int, kit_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=request.method == "POST")
    kit = _kit(access, kit_id)
    if request.method == "POST":
        return _kit_save(request, access, kit)
    form = BrandKitForm(initial=BrandKitForm.initial_from(kit.latest), project=access.project)
    return _kit_form_page(request, access, form, kit)


@login_required
@require_POST
def kit_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """The kit form's live preview (htmx), or the form page with it (its Preview button)."""
    access = project_access(
        request.user, project_id, needs=Role.EDITOR, writes=True
    )  # POST: refused when archived
    form = BrandKitForm(request.POST, project=access.project)
    if request.htmx:
        return render(request, "workspace/kit_form.html#kit-preview", {"preview": _kit_preview(form)})
    kit_id = parse_id(request.POST.get("kit"))  # not str.isdigit: "²" is a digit to it, and int() raises
    kit = _kit(access, kit_id) if kit_id is not None else None
    return _kit_form_page(request, access, form, kit)


def _kit_version_page(
    request: HttpRequest, access: ProjectAccess, kit: BrandKit, number: int
) -> HttpResponse:
    version = get_object_or_404(
        BrandKitVersion.objects.select_related("created_by").prefetch_related("references"),
        kit=kit,
        number=number,
    )
    context = {
        "project": access.project,
        "access": access,
        "kit": kit,
        "version": version,
        "versions": kit.versions.select_related("created_by").order_by("-number"),
        "example": prompting.compose_with_kit("A ceramic mug on a wooden table", version),
        "templates": TemplateVersion.objects.filter(brand_kit_version=version).select_related("template"),
    }
    return render(request, "workspace/kit_detail.html", context)


@login_required
@require_GET
def kit_detail(request: HttpRequest, project_id: int, kit_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    kit = _kit(access, kit_id)
    return _kit_version_page(request, access, kit, kit.latest.number)


@login_required
@require_GET
def kit_version(request: HttpRequest, project_id: int, kit_id: int, number: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    return _kit_version_page(request, access, _kit(access, kit_id), number)


@login_required
@require_POST
def kit_archive(request: HttpRequest, project_id: int, kit_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    kit = _kit(access, kit_id)
    kits.archive(kit, archived=kit.archived_at is None)
    messages.success(request, f"{kit.name} {'archived' if kit.archived_at else 'restored'}.")
    return redirect(kit)


# Prompt templates.


@login_required
@require_GET
def template_list(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    items = [
        (template, template.latest)
        for template in PromptTemplate.objects.filter(project=access.project).select_related("created_by")
    ]
    context = {"project": access.project, "access": access, "items": items}
    return render(request, "workspace/templates.html", context)


def _template_form_page(
    request: HttpRequest,
    access: ProjectAccess,
    form: TemplateForm,
    template: PromptTemplate | None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "project": access.project,
        "access": access,
        "form": form,
        "template": template,
        "preview": template_preview(form),
    }
    return render(request, "workspace/template_form.html", context, status=status)


def _template_save(
    request: HttpRequest, access: ProjectAccess, template: PromptTemplate | None
) -> HttpResponse:
    form = TemplateForm(request.POST, project=access.project)
    if not form.is_valid():
        return _template_form_page(request, access, form, template, status=400)
    data = form.cleaned_data
    version = kits.template_save(
        project=access.project,
        author=request.user,
        template=template,
        name=data["name"],
        text=data["text"],
        brand_kit_version=form.kit_version(),
        references=list(data["references"]),
        defaults=defaults_from(data),
        samples=data["samples"],
    )
    messages.success(request, f"Saved {version.template.name}, version {version.number}.")
    return redirect(version.template)


@login_required
def template_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=request.method == "POST")
    if request.method == "POST":
        return _template_save(request, access, None)
    return _template_form_page(request, access, TemplateForm(project=access.project), None)


@login_required
def template_edit(request: HttpRequest, project_id: int, template_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=request.method == "POST")
    template = _template(access, template_id)
    if request.method == "POST":
        return _template_save(request, access, template)
    form = TemplateForm(initial=TemplateForm.initial_from(template.latest), project=access.project)
    return _template_form_page(request, access, form, template)


@login_required
@require_POST
def template_preview_view(request: HttpRequest, project_id: int) -> HttpResponse:
    """The template form's live preview (htmx), or the form page with it (its Preview button)."""
    access = project_access(
        request.user, project_id, needs=Role.EDITOR, writes=True
    )  # POST: refused when archived
    form = TemplateForm(request.POST, project=access.project)
    if request.htmx:
        return render(
            request, "workspace/template_form.html#template-preview", {"preview": template_preview(form)}
        )
    template_id = parse_id(request.POST.get("template"))
    template = _template(access, template_id) if template_id is not None else None
    return _template_form_page(request, access, form, template)


def _template_version_page(
    request: HttpRequest, access: ProjectAccess, template: PromptTemplate, number: int
) -> HttpResponse:
    version = get_object_or_404(
        TemplateVersion.objects.select_related("created_by", "brand_kit_version__kit").prefetch_related(
            "references"
        ),
        template=template,
        number=number,
    )
    sample = {name: f"[{name}]" for name in version.variables}
    context = {
        "project": access.project,
        "access": access,
        "template": template,
        "version": version,
        "versions": template.versions.select_related("created_by").order_by("-number"),
        "example": prompting.compose_with_kit(prompting.render(version, sample), version.brand_kit_version),
        "job_count": version.jobs.count(),
    }
    return render(request, "workspace/template_detail.html", context)


@login_required
@require_GET
def template_detail(request: HttpRequest, project_id: int, template_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    template = _template(access, template_id)
    return _template_version_page(request, access, template, template.latest.number)


@login_required
@require_GET
def template_version(request: HttpRequest, project_id: int, template_id: int, number: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    return _template_version_page(request, access, _template(access, template_id), number)


@login_required
@require_POST
def template_archive(request: HttpRequest, project_id: int, template_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    template = _template(access, template_id)
    kits.archive(template, archived=template.archived_at is None)
    messages.success(request, f"{template.name} {'archived' if template.archived_at else 'restored'}.")
    return redirect(template)
