"""The reference library and the edit page that works from it (and from earlier images)."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from workspace import edits, imagemodels, jobs, library, spend, uploads
from workspace.access import ProjectAccess, project_access
from workspace.forms import EditForm
from workspace.models import Image, Job, Reference, Role
from workspace.views._common import parse_id, serve


@login_required
def references(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    status = 200
    report = None
    if request.method == "POST":
        access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
        files = request.FILES.getlist("files")
        if not files:
            report = {"stored": [], "rejected": [], "problem": "Choose at least one image to upload."}
            status = 400
        else:
            stored, rejected = library.references_upload(
                project=access.project, user=request.user, files=files
            )
            report = {"stored": stored, "rejected": rejected, "problem": ""}
            status = 200 if stored else 400
        if not request.htmx and status == 200 and not report["rejected"]:
            messages.success(
                request, f"{len(report['stored'])} image{pluralize(len(report['stored']))} added."
            )
            return redirect("references", project_id)
    items = access.project.references.in_library().select_related("uploaded_by", "content_credential")
    context = {"project": access.project, "access": access, "items": items, "report": report}
    if request.htmx and request.method == "POST":
        return render(request, "workspace/references.html#library", context, status=status)
    return render(request, "workspace/references.html", context, status=status)


@login_required
@require_POST
def reference_remove(request: HttpRequest, project_id: int, reference_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    reference = get_object_or_404(Reference, project=access.project, pk=reference_id)
    library.reference_remove(reference=reference)
    messages.success(
        request, f"{reference.name} removed from the library; images made from it keep it in their history."
    )
    return redirect("references", project_id)


@login_required
@require_GET
def reference_file(request: HttpRequest, project_id: int, reference_id: int, variant: str) -> FileResponse:
    access = project_access(request.user, project_id)
    reference = get_object_or_404(Reference, project=access.project, pk=reference_id)
    if variant not in ("file", "thumb"):
        raise Http404
    if variant == "thumb":
        return serve(reference.thumbnail.name, content_type="image/webp")
    return serve(reference.file.name, content_type=reference.content_type)


def _edit_context(access: ProjectAccess, form: EditForm, inputs: edits.Inputs, problem: str = "") -> dict:
    """The edit page: the chosen inputs with links that reorder or drop them, and links that add more."""
    project = access.project
    chosen = inputs.chosen
    first = chosen[0] if chosen else None
    first_url = ""
    if isinstance(first, Image):
        first_url = reverse("image_file", args=[project.pk, first.pk])
    elif first is not None:
        first_url = reverse("reference_file", args=[project.pk, first.pk, "file"])
    chosen_tokens = [edits.token(source) for source in chosen]
    base = reverse("edit", args=[project.pk])

    def url_for(order: list[str]) -> str:
        return f"{base}?{urlencode([('inputs', token) for token in order])}" if order else base

    def moved_up(index: int) -> list[str]:
        order = list(chosen_tokens)
        order[index - 1], order[index] = order[index], order[index - 1]
        return order

    full = len(chosen_tokens) >= settings.MAX_EDIT_INPUTS
    offered = {} if full else edits.candidates(project=project, exclude=chosen_tokens)
    picks = {
        group: [{"source": s, "add_url": url_for([*chosen_tokens, edits.token(s)])} for s in sources]
        for group, sources in offered.items()
    }
    return {
        "project": project,
        "access": access,
        "form": form,
        "chosen": [
            {
                "source": s,
                "token": edits.token(s),
                "is_image": isinstance(s, Image),
                "remove_url": url_for(chosen_tokens[:i] + chosen_tokens[i + 1 :]),
                "up_url": url_for(moved_up(i)) if i else "",
            }
            for i, s in enumerate(chosen)
        ],
        "full": full,
        "tokens": inputs.tokens,
        "first": first,
        "first_url": first_url,
        "problem": problem,
        "picks": picks,
        "capabilities": imagemodels.capabilities(),
        "max_inputs": settings.MAX_EDIT_INPUTS,
    }


@login_required
def edit(request: HttpRequest, project_id: int) -> HttpResponse:
    """Edit earlier images: choose inputs in order, describe the change, optionally paint a mask."""
    # The page exists only to make a job, so an archived project refuses it on GET too.
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    source = request.POST if request.method == "POST" else request.GET
    inputs = edits.inputs_resolve(project=access.project, tokens=source.getlist("inputs"))
    if request.method != "POST":
        again = request.GET.get("again")
        if again and parse_id(again) is None:
            return HttpResponse("That link is not valid: “again” must be a job number.", status=400)
        initial = {}
        if again:
            job = Job.objects.filter(project=access.project, pk=parse_id(again)).first()
            if job is not None:
                initial = EditForm.initial_from_job(job) | {"input_fidelity": job.input_fidelity}
        context = _edit_context(access, EditForm(initial=initial), inputs, inputs.problem)
        return render(request, "workspace/edit.html", context, status=400 if inputs.problem else 200)

    form = EditForm(request.POST, request.FILES)
    problem = inputs.problem
    mask_upload = request.FILES.get("mask_file") or request.FILES.get("mask")
    markup_upload = request.FILES.get("markup_file") or request.FILES.get("markup")
    if form.is_valid():
        form.check_overlays(has_mask=mask_upload is not None, has_markup=markup_upload is not None)
    if form.is_valid() and not problem:
        try:
            job = edits.edit_submit(
                project=access.project,
                author=request.user,
                prompt=form.cleaned_data["prompt"],
                params=form.job_params(),
                inputs=inputs.chosen,
                mask_upload=mask_upload,
                markup_upload=markup_upload,
            )
        except edits.EditRefused as refusal:
            problem = str(refusal)
        except uploads.UploadRejected as refusal:
            form.add_error("markup_file" if "markup" in refusal.reason else "mask_file", str(refusal))
        except (spend.BudgetExceeded, jobs.TooManyWaiting) as refusal:
            form.add_error(None, str(refusal))
            status = 429 if isinstance(refusal, jobs.TooManyWaiting) else 402
            return render(request, "workspace/edit.html", _edit_context(access, form, inputs), status=status)
        else:
            return redirect(f"{access.project.get_absolute_url()}#job-{job.pk}")
    return render(request, "workspace/edit.html", _edit_context(access, form, inputs, problem), status=400)
