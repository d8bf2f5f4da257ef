"""Edits of earlier images: which inputs were chosen (and whether they can still be read), what else
could be chosen, and the request itself with its optional mask."""

from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage

from workspace import formats, jobs, uploads
from workspace.models import Image, Job, Project, Reference
from workspace.views._common import parse_id  # the tokens come straight from the request

Source = Image | Reference


class EditRefused(Exception):
    """The inputs cannot make an edit; the message says why, for the person who chose them."""


@dataclass(frozen=True)
class Inputs:
    """The chosen inputs in order, or the problem that stopped them (then `chosen` is empty)."""

    chosen: list[Source] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    problem: str = ""


def token(source: Source) -> str:
    """How a form names an input: "img:5" for an image, "ref:3" for a library reference."""
    return f"img:{source.pk}" if isinstance(source, Image) else f"ref:{source.pk}"


def inputs_resolve(*, project: Project, tokens: list[str]) -> Inputs:
    """Turn ["img:5", "ref:3"] into Images and References of this project, in order, or say what is wrong."""
    tokens = [t for t in tokens if t][: settings.MAX_EDIT_INPUTS + 1]
    if len(tokens) > settings.MAX_EDIT_INPUTS:
        return Inputs(
            tokens=tokens,
            problem=f"Choose at most {settings.MAX_EDIT_INPUTS} inputs; you chose {len(tokens)}.",
        )
    wanted: list[tuple[str, int]] = []
    for item in tokens:
        kind, _, number = item.partition(":")
        pk = parse_id(number)
        if kind not in ("img", "ref") or pk is None:
            return Inputs(tokens=tokens, problem=f"“{item[:40]}” is not an image of this project.")
        wanted.append((kind, pk))
    # A deleted image is gone from every page (and its files go after the undo window): not an input.
    images = (
        Image.objects.visible().filter(project=project, pk__in=[n for k, n in wanted if k == "img"]).in_bulk()
    )
    # Only what is in the library now; a removed reference lives on in lineage and "Reproduce".
    refs = (
        Reference.objects.in_library()
        .filter(project=project, pk__in=[n for k, n in wanted if k == "ref"])
        .in_bulk()
    )
    chosen: list[Source] = []
    for kind, number in wanted:
        source = images.get(number) if kind == "img" else refs.get(number)
        if source is None:
            return Inputs(
                tokens=tokens,
                problem="One of the chosen inputs is not in this project (or no longer exists).",
            )
        if source.format not in formats.RASTER:
            return Inputs(
                tokens=tokens,
                problem=f"Image {source.pk} is {source.format.upper()}: only PNG, JPEG or WebP is editable.",
            )
        if not default_storage.exists(source.file.name):
            name = getattr(source, "name", f"Image {source.pk}")
            return Inputs(tokens=tokens, problem=f"{name} is missing from storage; choose another.")
        chosen.append(source)
    if len({(type(s).__name__, s.pk) for s in chosen}) != len(chosen):
        return Inputs(tokens=tokens, problem="The same image is chosen twice; each input can appear once.")
    return Inputs(chosen=chosen, tokens=tokens)


def candidates(*, project: Project, exclude: list[str]) -> dict[str, list[Source]]:
    """What the picker offers next to the chosen inputs: the library, then the newest images."""
    return {
        "references": [r for r in project.references.in_library()[:60] if token(r) not in exclude],
        "images": [
            i
            for i in Image.objects.visible()
            .filter(project=project, format__in=formats.RASTER)
            .order_by("-id")[:48]
            if token(i) not in exclude
        ],
    }


def edit_submit(
    *,
    project: Project,
    author: AbstractBaseUser,
    prompt: str,
    params: dict,
    inputs: list[Source],
    mask_upload,
    markup_upload=None,
) -> Job:
    """Check the mask or markup against the first input and queue the edit.

    Raises EditRefused without inputs, uploads.UploadRejected for a bad mask or markup (the caller's form
    has refused both together), spend.BudgetExceeded.
    """
    if not inputs:
        raise EditRefused("Choose at least one image to edit.")
    first = inputs[0]
    mask = mask_check(first=first, upload=mask_upload) if mask_upload is not None else None
    markup = None
    if markup_upload is not None:
        markup = uploads.clean_markup(markup_upload, width=first.width, height=first.height).data
    return jobs.edit_create(
        project=project, author=author, prompt=prompt, params=params, inputs=inputs, mask=mask, markup=markup
    )


def mask_check(*, first: Source, upload) -> bytes:
    """The mask re-encoded, once it is a PNG the size of the first input with some transparent pixels
    (the browser form and the API share these rules and messages). Raises uploads.UploadRejected."""
    return uploads.clean_mask(upload, width=first.width, height=first.height).data
