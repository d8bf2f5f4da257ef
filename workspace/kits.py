"""Saving brand kits and prompt templates: each save is a new numbered version (versions never change),
made under a lock on the kit or template so two saves at once get two numbers."""

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workspace import prompting
from workspace.campaign_models import (
    KIT_DEFAULT_FIELDS,
    BrandKit,
    BrandKitVersion,
    PromptTemplate,
    TemplateVersion,
)
from workspace.campaigns import clean_defaults, defaults_problems
from workspace.models import Project, Reference


def _next_number(versions) -> int:
    return (versions.aggregate(top=Max("number"))["top"] or 0) + 1


def _check_references(project: Project, references: list[Reference]) -> None:
    if any(ref.project_id != project.pk for ref in references):
        raise ValueError("A reference from another project was offered; forms only offer this project's.")
    if len(references) > settings.MAX_EDIT_INPUTS:
        raise ValueError(f"At most {settings.MAX_EDIT_INPUTS} references.")


def kit_save(
    *,
    project: Project,
    author,
    kit: BrandKit | None,
    name: str,
    style_words: str = "",
    art_direction: str = "",
    palette: list[str] | None = None,
    avoid: str = "",
    defaults: dict | None = None,
    references: list[Reference] | None = None,
) -> BrandKitVersion:
    """Create a kit (kit=None) or give `kit` its next version, and rename it to `name`."""
    palette = [colour.lower() for colour in palette or []]
    if problem := prompting.palette_problem(palette):
        raise ValueError(problem)
    references = list(references or [])
    _check_references(project, references)
    with transaction.atomic():
        if kit is None:
            kit = BrandKit.objects.create(project=project, name=name, created_by=author)
        else:
            kit = BrandKit.objects.select_for_update().get(pk=kit.pk, project=project)
            if kit.name != name:
                kit.name = name
                kit.save(update_fields=["name"])
        version = BrandKitVersion.objects.create(
            kit=kit,
            number=_next_number(kit.versions),
            style_words=style_words.strip(),
            art_direction=art_direction.strip(),
            palette=palette,
            avoid=avoid.strip(),
            defaults=clean_defaults(defaults or {}, allowed=KIT_DEFAULT_FIELDS),
            created_by=author,
        )
        version.references.set(references)
    return version


def template_save(
    *,
    project: Project,
    author,
    template: PromptTemplate | None,
    name: str,
    text: str,
    brand_kit_version: BrandKitVersion | None = None,
    references: list[Reference] | None = None,
    defaults: dict | None = None,
    samples: dict[str, str] | None = None,
) -> TemplateVersion:
    """Create a template (template=None) or give `template` its next version, renamed to `name`.

    `samples`: {variable: default value}; blank values are left out, and one for a name the text
    does not have is refused. Raises prompting.TemplateProblem for text that does not parse,
    ValueError for defaults the default model does not allow (nothing is saved).
    """
    parsed = prompting.parse_template(text)
    defaults = clean_defaults(defaults or {})
    if problems := defaults_problems(defaults):
        raise ValueError(" ".join(problems.values()))
    samples = {name: str(value).strip() for name, value in (samples or {}).items() if str(value).strip()}
    if unknown := set(samples) - set(parsed.variables):
        raise ValueError(f"The template has no variable {', '.join(sorted(unknown))}.")
    references = list(references or [])
    _check_references(project, references)
    if brand_kit_version is not None and brand_kit_version.kit.project_id != project.pk:
        raise ValueError("A brand kit from another project was offered.")
    with transaction.atomic():
        if template is None:
            template = PromptTemplate.objects.create(project=project, name=name, created_by=author)
        else:
            template = PromptTemplate.objects.select_for_update().get(pk=template.pk, project=project)
            if template.name != name:
                template.name = name
                template.save(update_fields=["name"])
        version = TemplateVersion.objects.create(
            template=template,
            number=_next_number(template.versions),
            text=text,
            variables=parsed.variables,
            brand_kit_version=brand_kit_version,
            defaults=defaults,
            # In the template's order, so the form and the page list them as the text does.
            samples={name: samples[name] for name in parsed.variables if name in samples},
            created_by=author,
        )
        version.references.set(references)
    return version


def archive(thing: BrandKit | PromptTemplate, *, archived: bool) -> None:
    """Hide a kit or template from the pickers (its versions and what they made stay readable)."""
    thing.archived_at = timezone.now() if archived else None
    thing.save(update_fields=["archived_at"])
