"""One image: its page, its files in every form, its family, and what people do to it (star, review,
comment, delete and undo)."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from workspace import formats, gallery, lineage, outputs, review
from workspace.access import ProjectAccess, object_access, project_access
from workspace.forms import CommentForm
from workspace.gallery import GalleryFilterForm
from workspace.models import Conversation, Favourite, Image, Role
from workspace.views._common import filters_query, parse_id, serve


def _image_for(
    request: HttpRequest, project_id: int, image_id: int, *, writes: bool = False, related: tuple = ()
) -> tuple[ProjectAccess, Image]:
    """A visible image: a deleted one (and so a purged one) is a 404 here, its page and its files."""
    return object_access(
        request.user,
        Image.objects.visible().select_related("job", "job__author", *related),
        project_id=project_id,
        pk=image_id,
        writes=writes,
    )


@login_required
@require_GET
def image_detail(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    # What made it, for "Made with" (the file views, hit per thumbnail, do not need these joins).
    made_with = ("job__template_version__template", "job__brand_kit_version__kit", "job__campaign")
    access, image = _image_for(request, project_id, image_id, related=made_with)
    reported = image.job.api_calls.filter(outcome="ok").order_by("-id").first()
    siblings = image.job.images.visible().order_by("index")
    inputs = lineage.parents(image)
    first_parent = next((item.image for item in inputs if item.image is not None), None)
    diff = None
    if first_parent is not None:
        diff = {
            "parent": first_parent,
            "prompt": lineage.prompt_diff(first_parent.job.prompt, image.job.prompt),
            "changes": lineage.parameter_changes(first_parent.job, image.job),
        }
    # Previous and next follow the gallery view the person came from (its filters ride on the URL).
    filters = filters_query(request)
    newer = older = None
    if request.GET.get("from") == "gallery" or filters:
        authors = [(pk, a) for a in request.GET.getlist("author") if (pk := parse_id(a)) is not None]
        form = GalleryFilterForm(request.GET, authors=authors)
        if form.is_valid():
            view = gallery.filtered(project=access.project, user=request.user, data=form.cleaned_data)
            newer, older = gallery.neighbours(view, image)
    return render(
        request,
        "workspace/image_detail.html",
        {
            "image": image,
            "job": image.job,
            "access": access,
            "project": access.project,
            "reported": reported,
            "siblings": siblings,
            "inputs": inputs,
            "children": lineage.children(image),
            # Threads that start from this image or made it, so a turn's image leads back to its thread.
            "threads": Conversation.objects.filter(Q(root_image=image) | Q(turns__image=image))
            .distinct()
            .order_by("pk"),
            "diff": diff,
            "show_raw": request.GET.get("view") == "raw",
            "is_favourite": Favourite.objects.filter(user=request.user, image=image).exists(),
            "comments": image.comments.select_related("author"),
            "comment_form": CommentForm(),
            "filters": filters,
            "newer": newer,
            "older": older,
            "reviews": Image.Review.choices,
            "undo_minutes": review.DELETE_UNDO_MINUTES,
        },
    )


@login_required
@require_GET
def image_file(request: HttpRequest, project_id: int, image_id: int) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    return serve(image.file.name, content_type=image.content_type)


@login_required
@require_GET
def image_thumb(request: HttpRequest, project_id: int, image_id: int) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    return serve(image.thumbnail.name, content_type="image/webp")


@login_required
@require_GET
def image_download(request: HttpRequest, project_id: int, image_id: int) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    return serve(image.file.name, content_type=image.content_type, download_name=image.download_name)


@login_required
@require_GET
def image_composite(request: HttpRequest, project_id: int, image_id: int, variant: str) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    if not image.composite or variant not in ("file", "thumb", "download"):
        raise Http404
    if variant == "thumb":
        return serve(image.composite_thumbnail.name, content_type="image/webp")
    download = f"{image.download_name.rsplit('.', 1)[0]}-pasted.png" if variant == "download" else None
    return serve(image.composite.name, content_type="image/png", download_name=download)


@login_required
@require_GET
def image_convert(request: HttpRequest, project_id: int, image_id: int, target: str) -> HttpResponse:
    """Download the original re-encoded as PNG, JPEG or WebP."""
    _, image = _image_for(request, project_id, image_id)
    if target not in formats.RASTER:  # GIF and SVG are what the model made, never what we convert to
        raise Http404
    if not default_storage.exists(image.file.name):
        raise Http404
    # Converted once and kept next to the original, then served as a file like any other: a popular
    # image does not cost a decode per download. The first conversion waits for a decode slot (503 busy).
    name = outputs.convert_cached(name=image.file.name, sha256=image.sha256, target=target)
    download = f"{image.download_name.rsplit('.', 1)[0]}.{formats.extension(target)}"
    return serve(name, content_type=formats.content_type(target), download_name=download)


@login_required
@require_GET
def image_family(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access, image = _image_for(request, project_id, image_id)
    tree = lineage.family(image)
    return render(
        request,
        "workspace/family.html",
        {"project": access.project, "access": access, "image": image, "family": tree},
    )


@login_required
@require_POST
def image_favourite(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access, image = _image_for(request, project_id, image_id, writes=True)
    on = request.POST.get("on") == "1"
    review.favourite_many(user=request.user, images=[image], on=on)
    if request.htmx:
        # The partial reads `is_favourite`, as the full page does: the button then offers the other way.
        return render(
            request,
            "workspace/image_detail.html#favourite",
            {"image": image, "project": access.project, "is_favourite": on},
        )
    return redirect(image)


@login_required
@require_POST
def image_review(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    image = get_object_or_404(Image.objects.visible(), project=access.project, pk=image_id)
    state = request.POST.get("state", "")
    if state not in Image.Review.values:
        return HttpResponse("Choose draft, approved or rejected.", status=400)
    review.review_many(user=request.user, images=Image.objects.filter(pk=image.pk), state=state)
    return redirect(f"{image.get_absolute_url()}?{request.POST.get('filters', '')}")


@login_required
@require_POST
def image_comment(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    _, image = _image_for(request, project_id, image_id, writes=True)
    try:
        review.comment_add(image=image, author=request.user, body=request.POST.get("body", ""))
    except review.ReviewRefused as refusal:
        messages.error(request, str(refusal))
    return redirect(f"{image.get_absolute_url()}#comments")


@login_required
@require_POST
def image_delete(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    """Delete, or with `undo` bring it back within review.DELETE_UNDO_MINUTES.

    The one route that reaches a deleted image (until its files are purged): the undo needs it. The
    gallery it sends you to offers the undo, since the image's own page is gone with it.
    """
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    image = get_object_or_404(Image, project=access.project, pk=image_id, purged_at__isnull=True)
    gallery_url = reverse("gallery", args=[project_id])
    if request.POST.get("undo"):
        try:
            review.image_restore(image=image, user=request.user)
        except review.ReviewRefused as refusal:
            messages.error(request, str(refusal))
            return redirect(gallery_url)
        messages.success(request, "Image restored.")
        return redirect(image)
    review.image_delete(image=image, user=request.user)
    messages.success(
        request, f"Image {image.pk} deleted. You can undo this for {review.DELETE_UNDO_MINUTES} minutes."
    )
    return redirect(f"{gallery_url}?{urlencode({'deleted': image.pk})}")
