"""Forms for brand kits and prompt templates, the Studio form that uses them, and the grid and batch
setup pages' forms (which read and label; workspace.grids and workspace.batches check the rest).

Django forms stay the single source of validation: the kit and template forms check what the services
would refuse (a bad palette, a template that does not parse, too many references) and say where.
"""

import re

from django import forms
from django.conf import settings
from django.db.models import Max, OuterRef, Subquery

from workspace import campaigns, formats, grids, prompting
from workspace import imagemodels as im
from workspace.campaign_models import BrandKit, BrandKitVersion, PromptTemplate, TemplateVersion
from workspace.forms import QUALITY_LABELS, GenerationForm
from workspace.models import Project, Reference

SAMPLE_PROMPT = "A ceramic mug on a wooden table"
VARIABLE_MAX_CHARS = 2000


class ReferencePicker(forms.CheckboxSelectMultiple):
    """Library references as checkboxes; the template draws each with its thumbnail."""

    option_template_name = "django/forms/widgets/checkbox_option.html"


# A stored default (campaign_models.DEFAULT_FIELDS) and the form field that sets it.
DEFAULT_FORM_FIELDS = {
    "model": "default_model",
    "quality": "default_quality",
    "size_preset": "default_size",
    "size": "default_size",
    "output_format": "default_format",
    "complexity": "default_complexity",
}


def _default_fields(form: forms.Form, *, model_fields: bool = False) -> None:
    """The default_* fields; `model_fields` adds the model and planning effort (a template's defaults
    cover every parameter a grid can vary, so a grid cell can become the template's default)."""
    if model_fields:
        form.fields["default_model"] = forms.ChoiceField(
            label="Default model",
            required=False,
            choices=[("", "No default"), *[(m.id, m.label) for m in im.selectable()]],
        )
    form.fields["default_size"] = forms.ChoiceField(
        label="Default size",
        required=False,
        choices=[("", "No default"), *[(p.key, f"{p.label} · {p.size}") for p in im.SIZE_PRESETS.values()]],
    )
    form.fields["default_quality"] = forms.ChoiceField(
        label="Default quality", required=False, choices=[("", "No default"), *QUALITY_LABELS.items()]
    )
    form.fields["default_format"] = forms.ChoiceField(
        label="Default format", required=False, choices=[("", "No default"), *formats.CHOICES]
    )
    if model_fields:
        form.fields["default_complexity"] = forms.ChoiceField(
            label="Default planning effort",
            required=False,
            choices=[("", "No default"), *[(level, level.capitalize()) for level in im.COMPLEXITY_LEVELS]],
        )


def _check_defaults(form: forms.Form, data: dict) -> None:
    """Field errors for defaults the default model (or the Studio's, when none is set) does not allow."""
    for name, problem in campaigns.defaults_problems(defaults_from(data)).items():
        field_name = DEFAULT_FORM_FIELDS[name]
        if field_name in form.fields and field_name not in form.errors:
            form.add_error(field_name, problem)


def defaults_from(data: dict) -> dict:
    """The form's default_* fields as a kit's or template's `defaults` (campaign_models.DEFAULT_FIELDS)."""
    defaults: dict = {}
    if data.get("default_size"):
        preset = im.SIZE_PRESETS[data["default_size"]]
        defaults |= {"size_preset": preset.key, "size": preset.size}
    if data.get("default_quality"):
        defaults["quality"] = data["default_quality"]
    if data.get("default_format"):
        defaults["output_format"] = data["default_format"]
    if data.get("default_model"):
        defaults["model"] = data["default_model"]
    if data.get("default_complexity"):
        defaults["complexity"] = data["default_complexity"]
    return defaults


def initial_defaults(defaults: dict) -> dict:
    return {
        "default_size": defaults.get("size_preset", "")
        if defaults.get("size_preset") in im.SIZE_PRESETS
        else "",
        "default_quality": defaults.get("quality", ""),
        "default_format": defaults.get("output_format", ""),
        "default_model": defaults.get("model", ""),
        "default_complexity": defaults.get("complexity", ""),
    }


def _references_field(project: Project) -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        label="References from the library",
        required=False,
        queryset=Reference.objects.in_library().filter(project=project),
        widget=ReferencePicker,
        help_text="Sent as inputs with every prompt, which makes each job an edit.",
    )


def _check_reference_count(form: forms.Form, references) -> None:
    if references is not None and len(references) > settings.MAX_EDIT_INPUTS:
        form.add_error("references", f"Choose at most {settings.MAX_EDIT_INPUTS} references.")


class BrandKitForm(forms.Form):
    name = forms.CharField(max_length=120)
    style_words = forms.CharField(
        label="Style words",
        max_length=500,
        required=False,
        help_text="For example: warm, editorial, natural light.",
    )
    art_direction = forms.CharField(
        label="Art direction", max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    palette = forms.CharField(
        label="Palette",
        max_length=400,
        required=False,
        help_text="Hex colours separated by spaces or commas, for example #1f3a5f #f2e8d5.",
    )
    avoid = forms.CharField(
        label="Things to avoid", max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    sample_prompt = forms.CharField(
        label="Sample prompt for the preview",
        max_length=2000,
        required=False,
        initial=SAMPLE_PROMPT,
        help_text="Not saved: only shows how the kit is added to a prompt.",
    )

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["references"] = _references_field(project)
        _default_fields(self)

    def clean_palette(self) -> list[str]:
        colours = [c.lower() for c in re.split(r"[\s,]+", self.cleaned_data["palette"].strip()) if c]
        if problem := prompting.palette_problem(colours):
            raise forms.ValidationError(problem)
        if len(colours) > 12:
            raise forms.ValidationError("Up to 12 colours.")
        return colours

    def clean(self) -> dict:
        data = super().clean()
        _check_reference_count(self, data.get("references"))
        return data

    def preview_kit(self) -> BrandKitVersion:
        """An unsaved version with what the form holds, for the preview (valid parts only)."""
        data = getattr(self, "cleaned_data", {})
        return BrandKitVersion(
            style_words=data.get("style_words", ""),
            art_direction=data.get("art_direction", ""),
            palette=data.get("palette", []) if "palette" not in self.errors else [],
            avoid=data.get("avoid", ""),
        )

    @classmethod
    def initial_from(cls, version: BrandKitVersion) -> dict:
        return {
            "name": version.kit.name,
            "style_words": version.style_words,
            "art_direction": version.art_direction,
            "palette": " ".join(version.palette),
            "avoid": version.avoid,
            "references": list(version.references.all()),
        } | initial_defaults(version.defaults)


def parse_samples(text: str) -> dict[str, str]:
    """ "name = value" lines into a dict (lines without "=" are skipped)."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip():
            values[name.strip()] = value.strip()
    return values


class TemplateForm(forms.Form):
    name = forms.CharField(max_length=120)
    text = forms.CharField(
        label="Template",
        max_length=im.MAX_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "true"}),
        help_text="Name variables in braces: {product}, {season}. Write {{ or }} for a brace in the prompt.",
    )
    brand_kit = forms.ModelChoiceField(
        label="Brand kit",
        required=False,
        queryset=BrandKit.objects.none(),
        empty_label="No brand kit",
        help_text="Its newest version is used, and stays with this template version.",
    )
    samples = forms.CharField(
        label="Default values",
        required=False,
        max_length=8000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "product = linen shirt\nseason = spring"}),
        help_text="One per line, name = value. Saved with the version: the Studio and grids start "
        "with them, and the preview uses them. Leave a value empty for no default.",
    )

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["brand_kit"].queryset = BrandKit.objects.filter(project=project, archived_at__isnull=True)
        self.fields["references"] = _references_field(project)
        _default_fields(self, model_fields=True)

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        try:
            self.parsed = prompting.parse_template(text)
        except prompting.TemplateProblem as problem:
            raise forms.ValidationError(problem.message) from None
        return text

    def clean_samples(self) -> dict[str, str]:
        """The default values as {variable: value}, blanks left out (checked against the text in clean)."""
        values = {name: value for name, value in parse_samples(self.cleaned_data["samples"]).items() if value}
        for name, value in values.items():
            if len(value) > VARIABLE_MAX_CHARS:
                raise forms.ValidationError(f"{name}: at most {VARIABLE_MAX_CHARS:,} characters.")
        return values

    def clean(self) -> dict:
        data = super().clean()
        _check_reference_count(self, data.get("references"))
        kit = data.get("brand_kit")
        if kit is not None and kit.latest is None:
            self.add_error("brand_kit", "That brand kit has no version yet.")
        parsed = getattr(self, "parsed", None)
        unknown = [name for name in data.get("samples") or {} if parsed and name not in parsed.variables]
        if unknown:
            self.add_error(
                "samples",
                f"The template has no variable {', '.join(f'{{{name}}}' for name in unknown)}: "
                "remove that line or add the variable to the template.",
            )
        _check_defaults(self, data)
        return data

    def kit_version(self) -> BrandKitVersion | None:
        kit = self.cleaned_data.get("brand_kit")
        return kit.latest if kit is not None else None

    @classmethod
    def initial_from(cls, version: TemplateVersion) -> dict:
        kit = version.brand_kit_version
        return {
            "name": version.template.name,
            "text": version.text,
            "brand_kit": kit.kit_id if kit is not None else None,
            "references": list(version.references.all()),
            "samples": "\n".join(f"{name} = {version.samples.get(name, '')}" for name in version.variables),
        } | initial_defaults(version.defaults)


def template_preview(form: TemplateForm) -> dict:
    """What the template form's preview shows: the variables and the exact prompt for the sample values
    (a variable without a sample shows as [name]), or the problem with the template."""
    text = form.data.get("text", "") if form.is_bound else form.initial.get("text", "")
    try:
        parsed = prompting.parse_template(text)
    except prompting.TemplateProblem as problem:
        return {"problem": problem.message, "position": problem.position}
    if not text.strip():
        return {"problem": "Write the template to see the prompt it makes."}
    samples = parse_samples(
        form.data.get("samples", "") if form.is_bound else form.initial.get("samples", "")
    )
    values = {name: samples.get(name) or f"[{name}]" for name in parsed.variables}
    defaults = {name: samples[name] for name in parsed.variables if samples.get(name)}
    kit = None
    kit_id = form.data.get("brand_kit") if form.is_bound else form.initial.get("brand_kit")
    if kit_id:
        # ASCII digits only: "²" is a digit to isdigit() and the query then raises (a 500).
        pk = kit_id if str(kit_id).isascii() and str(kit_id).isdigit() and len(str(kit_id)) <= 18 else 0
        found = form.fields["brand_kit"].queryset.filter(pk=pk).first()
        kit = found.latest if found is not None else None
    prompt = prompting.compose_with_kit(prompting.render(text, values), kit)
    return {
        "variables": parsed.variables,
        "defaults": defaults,
        "prompt": prompt,
        "kit": kit,
        "too_long": len(prompt) > im.MAX_PROMPT_CHARS,
    }


def variable_field_name(name: str) -> str:
    return f"var_{name}"


class StudioForm(GenerationForm):
    """The Studio's form, optionally from a template version (one field per variable, the prompt made
    from them) and/or with a brand kit; `final_prompt` is then exactly what is sent."""

    def __init__(
        self,
        *args,
        template_version: TemplateVersion | None = None,
        kit_version: BrandKitVersion | None = None,
        for_estimate: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.template_version = template_version
        self.kit_version = campaigns.kit_for(template_version=template_version, brand_kit_version=kit_version)
        self.chosen_kit = kit_version
        self.for_estimate = for_estimate
        self.final_prompt = ""
        if template_version is not None:
            self.fields["prompt"].required = False
            for name in template_version.variables:
                self.fields[variable_field_name(name)] = forms.CharField(
                    label=name.replace("_", " ").capitalize(),
                    max_length=VARIABLE_MAX_CHARS,
                    required=not for_estimate,
                    error_messages={"required": f"Fill in {{{name}}}."},
                    # The version's default value for it, which the person may change.
                    initial=template_version.samples.get(name, ""),
                )

    def variable_fields(self) -> list:
        names = self.template_version.variables if self.template_version is not None else []
        return [self[variable_field_name(name)] for name in names]

    def values(self) -> dict[str, str]:
        data = getattr(self, "cleaned_data", {})
        names = self.template_version.variables if self.template_version is not None else []
        return {name: data.get(variable_field_name(name)) or "" for name in names}

    def clean(self) -> dict:
        data = super().clean()
        if self.template_version is None and self.kit_version is None:
            self.final_prompt = data.get("prompt", "")
            return data
        values = self.values()
        if self.for_estimate and self.template_version is not None:
            # The cost does not wait for every value; a blank one counts as its name.
            values = {name: value or name for name, value in values.items()}
        try:
            self.final_prompt = campaigns.final_prompt(
                template_version=self.template_version,
                values=values,
                brand_kit_version=self.chosen_kit,
                prompt=data.get("prompt", ""),
            )
        except prompting.TemplateProblem as problem:
            if not any(variable_field_name(n) in self.errors for n in values):
                self.add_error(None, problem.message)
        return data


# --- Grids and catalog batches ----------------------------------------------------------------------

KEEP = [("", "As the template says")]
MAX_CSV_BYTES = 50 * 1024 * 1024


def _templates(project):
    return PromptTemplate.objects.filter(project=project, archived_at__isnull=True).order_by("name", "id")


def _kits(project):
    return BrandKit.objects.filter(project=project, archived_at__isnull=True).order_by("name", "id")


def _parse_id(raw) -> int | None:
    text = str(raw or "").strip()
    return int(text) if text.isdigit() and len(text) < 12 else None


def chosen_template_version(project: Project, data) -> TemplateVersion | None:
    """The template version a grid's or batch's form data chooses: its `template_version` when that is
    a version of its `template` (this project's), else the template's newest; None without a template.

    It decides which variables the form asks for; a version that does not fit is refused by the form's
    own `template_version` field (GridForm/BatchForm.clean), so this never raises.
    """
    data = data or {}
    template = PromptTemplate.objects.filter(project=project, pk=_parse_id(data.get("template")) or 0).first()
    if template is None:
        return None
    version_id = _parse_id(data.get("template_version"))
    chosen = template.versions.filter(pk=version_id).first() if version_id else None
    return chosen or template.latest


class VersionChoiceField(forms.ModelChoiceField):
    """A template version by id, labelled with its number, date and author (and its template's name
    when the choices span templates) so a person can tell last month's approved version from today's."""

    def __init__(self, *args, with_template: bool = False, **kwargs) -> None:
        self.with_template = with_template
        super().__init__(*args, **kwargs)

    def label_from_instance(self, version: TemplateVersion) -> str:
        newest = " (newest)" if version.number == version.newest_number else ""
        label = (
            f"Version {version.number}{newest} · {version.created_at:%d %b %Y} · "
            f"{version.created_by.get_username()}"
        )
        return f"{version.template.name}: {label}" if self.with_template else label


def _version_field(*, with_template: bool) -> VersionChoiceField:
    return VersionChoiceField(
        queryset=TemplateVersion.objects.none(),
        required=False,
        with_template=with_template,
        label="Template version",
        empty_label="The newest version",
        help_text="Keep running an approved version while a newer one is being edited.",
        error_messages={"invalid_choice": "Choose one of this template's versions."},
    )


def _versions(project: Project, template: PromptTemplate | None = None):
    """Versions of this project's templates, newest first, each knowing its template's newest number."""
    newest = (
        TemplateVersion.objects.filter(template=OuterRef("template"))
        .values("template")
        .annotate(top=Max("number"))
        .values("top")
    )
    versions = TemplateVersion.objects.filter(template__project=project, template__archived_at__isnull=True)
    if template is not None:
        versions = versions.filter(template=template)
    return (
        versions.select_related("template", "created_by")
        .annotate(newest_number=Subquery(newest))
        .order_by("template__name", "template_id", "-number")
    )


def _check_version(form: forms.Form, data: dict) -> None:
    """The chosen version must be one of the chosen template's; an empty choice means its newest."""
    version, template = data.get("template_version"), data.get("template")
    if version is None:
        data["template_version"] = template.latest if template is not None else None
    elif template is None:
        form.add_error("template_version", "Choose the template of this version, or no version.")
    elif version.template_id != template.pk:
        form.add_error(
            "template_version",
            f"Version {version.number} is a version of “{version.template.name}”, not of "
            f"“{template.name}”: choose one of its own versions.",
        )


class _Common(forms.Form):
    name = forms.CharField(max_length=120, required=False, help_text="Optional; a name is made up if empty.")
    kit = forms.ModelChoiceField(
        queryset=BrandKit.objects.none(),
        required=False,
        empty_label="None (or the template's own)",
        label="Brand kit",
    )
    # Callables: the models are registry rows, read when a form is built, not when this module loads.
    model = forms.ChoiceField(
        required=False, choices=lambda: KEEP + [(m.id, m.label) for m in im.selectable()]
    )
    quality = forms.ChoiceField(
        required=False, choices=lambda: KEEP + [(q, q) for q in grids.allowed_values("quality")]
    )
    size = forms.ChoiceField(
        required=False, choices=KEEP + [(p.key, f"{p.label} ({p.size})") for p in im.SIZE_PRESETS.values()]
    )
    overnight = forms.BooleanField(required=False, label="Run overnight (half price, ready within 24 h)")

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["kit"].queryset = _kits(project)

    def kit_version(self):
        kit = self.cleaned_data.get("kit")
        return kit.latest if kit is not None else None

    def base(self) -> dict:
        """The job parameters every job of the campaign shares (under a grid's axes)."""
        base = {}
        for name in ("model", "quality"):
            if self.cleaned_data.get(name):
                base[name] = self.cleaned_data[name]
        if self.cleaned_data.get("size"):
            base["size_preset"] = self.cleaned_data["size"]
        return base


class GridForm(_Common):
    template = forms.ModelChoiceField(
        queryset=PromptTemplate.objects.none(), required=False, empty_label="No template: write a prompt"
    )
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=im.MAX_PROMPT_CHARS
    )
    template_version = _version_field(with_template=False)
    axis1 = forms.ChoiceField(label="First axis")
    values1 = forms.CharField(label="Its values", help_text="Separated by commas.", max_length=2000)
    axis2 = forms.ChoiceField(label="Second axis (optional)", required=False)
    values2 = forms.CharField(label="Its values", required=False, max_length=2000)

    def __init__(self, *args, project, template_version=None, **kwargs) -> None:
        super().__init__(*args, project=project, **kwargs)
        self.fields["template"].queryset = _templates(project)
        # `template_version`: the version the variables and axes are drawn from (the view's
        # chosen_template_version); the field below is what was asked for, and clean() checks it.
        self.template_version = template_version
        self.fields["template_version"].queryset = _versions(
            project, template_version.template if template_version is not None else None
        )
        choices = grids.axis_choices(template_version)
        self.fields["axis1"].choices = choices
        self.fields["axis2"].choices = [("", "None"), *choices]
        # One field per variable: its value in every cell, unless the variable is an axis.
        for name in template_version.variables if template_version is not None else []:
            self.fields[f"var_{name}"] = forms.CharField(
                label=f"{{{name}}}",
                required=False,
                max_length=im.MAX_PROMPT_CHARS,
                initial=template_version.samples.get(name, ""),
                help_text="An axis on it replaces this value in each cell.",
            )

    def clean(self) -> dict:
        data = super().clean()
        _check_version(self, data)
        chosen = data.get("template_version")
        if chosen is not None and self.template_version is not None and chosen != self.template_version:
            # The fields were drawn for another version (a caller that did not use
            # chosen_template_version): refuse rather than mix one version's values with another's.
            self.add_error("template_version", "The form was drawn for another version; show it again.")
        return data

    def variable_fields(self):
        return [self[name] for name in self.fields if name.startswith("var_")]

    def values(self) -> dict[str, str]:
        return {
            name[len("var_") :]: value for name, value in self.cleaned_data.items() if name.startswith("var_")
        }

    def axes(self) -> list[tuple[str, str]]:
        axes = [(self.cleaned_data["axis1"], self.cleaned_data["values1"])]
        if self.cleaned_data.get("axis2"):
            axes.append((self.cleaned_data["axis2"], self.cleaned_data.get("values2", "")))
        return axes

    def plan(self, *, project: Project) -> grids.Plan:
        """The valid form's grid, every cell estimated (the page and the API show and queue this).
        Raises grids.GridProblem naming the field at fault."""
        return grids.grid_plan(
            project=project,
            template_version=self.template_version,
            brand_kit_version=self.kit_version(),
            prompt=self.cleaned_data.get("prompt", ""),
            values=self.values(),
            base=self.base(),
            axes=self.axes(),
            overnight=self.cleaned_data["overnight"],
        )

    def campaign_name(self, plan: grids.Plan) -> str:
        """The name given, or the template and the axes ("Product shot v2: Quality x Size")."""
        subject = str(self.template_version) if self.template_version is not None else "Prompt"
        made_up = f"{subject}: {' × '.join(axis['label'] for axis in plan.axes)}"
        return (self.cleaned_data["name"] or made_up)[:120]


class BatchForm(_Common):
    template = forms.ModelChoiceField(queryset=PromptTemplate.objects.none(), empty_label=None)
    template_version = _version_field(with_template=True)
    file = forms.FileField(label="CSV file", help_text="One row per item; the first line names the columns.")
    key_column = forms.CharField(
        max_length=100,
        required=False,
        label="Name the files by column",
        help_text="For example sku; empty: by row number. You can change it on the next page.",
    )

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, project=project, **kwargs)
        self.fields["template"].queryset = _templates(project)
        self.fields["template_version"].queryset = _versions(project)

    def clean(self) -> dict:
        """`cleaned_data["template_version"]` is then the version to run: the one chosen, or the
        template's newest."""
        data = super().clean()
        _check_version(self, data)
        return data

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(f"The file is {upload.size:,} bytes; at most {MAX_CSV_BYTES:,}.")
        return upload
