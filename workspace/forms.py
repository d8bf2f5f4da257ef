from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.core.validators import MinValueValidator
from django.db.models import Q
from django.utils import timezone

from workspace import formats, spend
from workspace import imagemodels as im
from workspace.models import (
    MAX_MONTHLY_BUDGET,
    AuditEvent,
    Budget,
    ImageModelSpec,
    Job,
    Membership,
    Project,
    Role,
)
from workspace.review import COMMENT_MAX_CHARS
from workspace.webhook_models import SUBSCRIBABLE

QUALITY_LABELS = {
    "auto": "Auto",
    "low": "Low (drafts)",
    "medium": "Medium",
    "high": "High",
    "xhigh": "Extra high",
    "max": "Max",
}


AUTO_SIZE = "auto"


class ModelSelect(forms.Select):
    """The model menu, with the models that have no price shown but not choosable."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unpriced: set[str] = set()

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None) -> dict:
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value in self.unpriced:
            option["attrs"]["disabled"] = True
            option["label"] = f"{label} (no price set: ask an admin)"
        return option


def unpriced_model_error(model: im.ImageModel) -> str:
    return (
        f"{model.label} has no price set, so its cost could not be counted against any budget; "
        "ask an admin to add its price, or choose another model."
    )


class RegistryModelField(forms.ChoiceField):
    """The model menu lists the models one may choose; any registry name passes here, so clean_model can
    say in words why a retired one is refused rather than "Select a valid choice"."""

    def valid_value(self, value) -> bool:
        return im.get_model(str(value)) is not None or super().valid_value(value)


def _svg_author_choices() -> list[tuple[str, str]]:
    authors = dict.fromkeys(author for model in im.selectable() for author in model.svg_authors)
    return [("", "Model default"), *[(author, author) for author in authors]]


class WholeNumberField(forms.IntegerField):
    """An integer in ASCII digits. int() also reads "٣" (Arabic-Indic), which no number input sends."""

    def to_python(self, value):
        if isinstance(value, str) and not value.strip().isascii():
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class GenerationForm(forms.Form):
    """The generation request. The same rules the browser shows run here before anything is queued."""

    allows_auto_size = False

    prompt = forms.CharField(
        max_length=im.MAX_PROMPT_CHARS,
        error_messages={"required": "Describe the image you want."},
        widget=forms.Textarea(
            attrs={"rows": 5, "placeholder": "Describe the image: subject, setting, light, style…"}
        ),
    )
    # Only models a person may choose now (retired ones are refused in clean_model with a reason);
    # a callable, so a row an admin adds appears without a restart.
    model = RegistryModelField(
        choices=lambda: [(m.id, m.label) for m in im.selectable()],
        initial=im.DEFAULT_MODEL,
        widget=ModelSelect,
    )
    size = forms.ChoiceField(
        choices=[(p.key, f"{p.label} · {p.size.replace('x', '×')}") for p in im.SIZE_PRESETS.values()]
        + [(im.CUSTOM_SIZE, "Custom…")],
        initial=im.DEFAULT_SIZE_PRESET,
    )
    width = WholeNumberField(required=False, min_value=16, max_value=im.MAX_EDGE, label="Width (px)")
    height = WholeNumberField(required=False, min_value=16, max_value=im.MAX_EDGE, label="Height (px)")
    quality = forms.ChoiceField(
        choices=[(q, QUALITY_LABELS[q]) for q in ("auto", "low", "medium", "high", "xhigh", "max")],
        initial="auto",
    )
    output_format = forms.ChoiceField(label="Format", choices=formats.CHOICES, initial="png")
    output_compression = WholeNumberField(
        label="Compression (%)",
        required=False,
        min_value=0,
        max_value=100,
        initial=100,
        help_text="100 keeps the most detail.",
    )
    background = forms.ChoiceField(
        choices=[("auto", "Auto"), ("opaque", "Opaque"), ("transparent", "Transparent")], initial="auto"
    )
    moderation = forms.ChoiceField(
        choices=[("auto", "Standard"), ("low", "Less restrictive")],
        initial="auto",
    )
    complexity = forms.ChoiceField(
        label="Planning effort",
        required=False,
        choices=[("", "Model default"), ("low", "Low"), ("medium", "Medium"), ("high", "High")],
        help_text="How much the model thinks about composition before drawing.",
    )
    n = WholeNumberField(label="Number of images", min_value=1, max_value=im.MAX_IMAGES_PER_JOB, initial=1)
    frame_count = WholeNumberField(
        label="Frames",
        required=False,
        min_value=im.MIN_FRAMES,
        max_value=im.MAX_FRAMES,
        initial=im.DEFAULT_FRAMES,
        help_text=f"GIF only: {im.MIN_FRAMES} to {im.MAX_FRAMES} frames.",
        error_messages={
            "min_value": f"A GIF has at least {im.MIN_FRAMES} frames.",
            "max_value": f"A GIF has at most {im.MAX_FRAMES} frames.",
        },
    )
    frame_duration_ms = WholeNumberField(
        label="Frame duration (ms)",
        required=False,
        min_value=im.MIN_FRAME_MS,
        max_value=im.MAX_FRAME_MS,
        initial=im.DEFAULT_FRAME_MS,
        help_text="GIF only: how long each frame shows; rounded to 10 ms.",
    )
    svg_model = forms.ChoiceField(
        label="SVG author",
        required=False,
        choices=_svg_author_choices,
        help_text="SVG only: the model that writes it.",
    )
    svg_effort = forms.ChoiceField(
        label="SVG author effort",
        required=False,
        choices=[("", "Author's default"), *[(e, e.capitalize()) for e in im.SVG_EFFORTS]],
        help_text="SVG only: how long the author reasons.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # One query per form: an unpriced model would be charged nothing, so it cannot be chosen.
        self.unpriced = spend.unpriced_models()
        self.fields["model"].widget.unpriced = self.unpriced

    def clean_model(self) -> str:
        model_id = self.cleaned_data["model"]
        model = im.get_model(model_id)
        if model is None:
            raise forms.ValidationError("Choose one of the models in the list.")
        if model.retired:
            raise forms.ValidationError(im.retired_problem(model))
        if model_id in self.unpriced:
            raise forms.ValidationError(unpriced_model_error(model))
        return model_id

    def clean_prompt(self) -> str:
        prompt = self.cleaned_data["prompt"].strip()
        if not prompt and self.fields["prompt"].required:
            raise forms.ValidationError("Describe the image you want.")
        return prompt

    def clean(self) -> dict:
        data = super().clean()
        model = im.get_model(data.get("model") or "")
        if model is None:
            return data
        size_key = data.get("size")
        if size_key == AUTO_SIZE and self.allows_auto_size:
            data["api_size"] = AUTO_SIZE
        elif size_key == im.CUSTOM_SIZE:
            width, height = data.get("width"), data.get("height")
            if not model.custom_sizes:
                self.add_error("size", f"{model.label} only makes the standard sizes; pick a preset.")
            elif width is None or height is None:
                if width is None and "width" not in self.errors:
                    self.add_error("width", "Enter a width in pixels.")
                if height is None and "height" not in self.errors:
                    self.add_error("height", "Enter a height in pixels.")
            elif problem := im.custom_size_problem(width, height, model):
                self.add_error("width", problem)
            else:
                data["api_size"] = f"{width}x{height}"
        elif size_key in im.SIZE_PRESETS:
            preset = im.SIZE_PRESETS[size_key]
            if preset not in im.presets_for(model):
                self.add_error(
                    "size", f"{model.label} cannot make {preset.label.lower()} images; pick another size."
                )
            else:
                data["api_size"] = preset.size

        quality = data.get("quality")
        if quality and quality not in model.qualities:
            self.add_error(
                "quality", f"{model.label} does not offer {QUALITY_LABELS[quality].lower()} quality."
            )

        output_format = data.get("output_format")
        if data.get("background") == "transparent":
            if output_format not in formats.TRANSPARENT:
                self.add_error(
                    "background", "A transparent background needs PNG or WebP; JPEG has no transparency."
                )
            elif not model.transparent:
                self.add_error("background", f"{model.label} cannot make transparent backgrounds.")
        if output_format not in formats.COMPRESSIBLE:
            data["output_compression"] = None
        elif data.get("output_compression") is None and "output_compression" not in self.errors:
            data["output_compression"] = 100

        if data.get("complexity") and not model.complexity:
            self.add_error(
                "complexity", f"{model.label} does not take a planning effort; leave it on the default."
            )
        elif data.get("complexity") and data["complexity"] not in model.complexity_levels:
            self.add_error(
                "complexity", f"{model.label} does not offer {data['complexity']} planning effort."
            )
        self._clean_output_kind(data, model)
        return data

    def _clean_output_kind(self, data: dict, model: im.ImageModel) -> None:
        """GIF and SVG: only on models whose row allows them, with their own fields; others send none."""
        output_format = data.get("output_format")
        if output_format in ("gif", "svg") and output_format not in model.output_formats:
            capable = [m.label for m in im.selectable() if output_format in m.output_formats]
            hint = f"; choose {' or '.join(capable)}" if capable else ""
            self.add_error(
                "output_format", f"{model.label} cannot make {output_format.upper()} images{hint}."
            )
            return
        if output_format == "gif":
            if data.get("frame_count") is None and "frame_count" not in self.errors:
                data["frame_count"] = im.DEFAULT_FRAMES
            if data.get("frame_duration_ms") is None and "frame_duration_ms" not in self.errors:
                data["frame_duration_ms"] = im.DEFAULT_FRAME_MS
        else:
            data["frame_count"] = data["frame_duration_ms"] = None
            for name in ("frame_count", "frame_duration_ms"):
                self.errors.pop(name, None)  # a bad value in a field that is not used is no reason to refuse
        if output_format == "svg":
            if data.get("n") not in (None, 1):
                self.add_error("n", "An SVG is made one at a time: set the number of images to 1.")
            author = data.get("svg_model") or ""
            if author and author not in model.svg_authors:
                self.add_error("svg_model", f"{model.label} cannot have its SVG written by {author}.")
            elif not author and model.svg_authors:
                data["svg_model"] = model.svg_authors[0]
        else:
            data["svg_model"] = data["svg_effort"] = ""

    def job_params(self) -> dict:
        """Job.REQUEST_FIELDS with their values: exactly what will be sent.

        Fields the form does not show (moderation on edits, input_fidelity on generations) are the
        "not sent" value; the size field holds the preset's name, and the size is what it resolved to.
        """
        data = self.cleaned_data
        return {name: data.get(name) or "" for name in Job.REQUEST_FIELDS} | {
            "size": data["api_size"],
            "size_preset": data["size"],
            "output_compression": data["output_compression"],
            "moderation": data.get("moderation") or "auto",
            "n": data["n"],
            "frame_count": data.get("frame_count"),
            "frame_duration_ms": data.get("frame_duration_ms"),
        }

    @classmethod
    def initial_from_job(cls, job) -> dict:
        """The form filled in as a job was asked, for "run again"."""
        width, height = job.width, job.height
        return {
            "prompt": job.prompt,
            "model": job.model,
            "size": job.size_preset or im.CUSTOM_SIZE,
            "width": width,
            "height": height,
            "quality": job.quality,
            "output_format": job.output_format,
            "output_compression": job.output_compression if job.output_compression is not None else 100,
            "background": job.background,
            "moderation": job.moderation,
            "complexity": job.complexity,
            "n": job.n,
            "frame_count": job.frame_count or im.DEFAULT_FRAMES,
            "frame_duration_ms": job.frame_duration_ms or im.DEFAULT_FRAME_MS,
            "svg_model": job.svg_model,
            "svg_effort": job.svg_effort,
        }


class EditForm(GenerationForm):
    """An edit of earlier images: the generation rules, plus input fidelity and the mask."""

    allows_auto_size = True
    input_fidelity = forms.ChoiceField(
        label="Input fidelity",
        required=False,
        choices=[("", "Model default"), ("low", "Low"), ("high", "High: keep faces and logos closer")],
    )
    mask_file = forms.FileField(
        label="Or upload a mask",
        required=False,
        help_text="A PNG the size of the first input; transparent where the image should change.",
    )
    markup_file = forms.FileField(
        label="Or upload a markup",
        required=False,
        help_text="A transparent PNG the size of the first input, with circles, arrows or labels on it.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["moderation"]  # the edits endpoint has no moderation setting
        size = self.fields["size"]
        size.choices = [(AUTO_SIZE, "Same shape as the first input"), *size.choices]
        size.initial = AUTO_SIZE

    def clean(self) -> dict:
        data = super().clean()
        model = im.get_model(data.get("model") or "")
        fidelity = data.get("input_fidelity")
        if model is not None and fidelity:
            if not model.input_fidelity:
                self.add_error(
                    "input_fidelity",
                    f"{model.label} keeps inputs at high fidelity on its own; leave it on the default.",
                )
            elif fidelity not in model.input_fidelity:
                self.add_error(
                    "input_fidelity",
                    f"{model.label} only takes {' or '.join(model.input_fidelity)} fidelity.",
                )
        return data

    def check_overlays(self, *, has_mask: bool, has_markup: bool) -> None:
        """A mask or a markup (painted in the page or uploaded), never both; a markup only on models that
        take one; no mask on a GIF. Called by the view once it knows which files came."""
        model = im.get_model(self.cleaned_data.get("model") or "")
        if model is None:
            return
        if has_mask and has_markup:
            self.add_error(
                "markup_file", "Use a mask or a markup, not both: clear one of them (the API takes one)."
            )
        elif has_markup and not model.markup:
            capable = [m.label for m in im.selectable() if m.markup]
            self.add_error(
                "markup_file", f"{model.label} does not take a markup; choose {' or '.join(capable[:2])}."
            )
        if has_mask and self.cleaned_data.get("output_format") == "gif":
            self.add_error("output_format", "A GIF cannot be made with a mask: clear the mask or pick PNG.")


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name"]
        labels = {"name": "Project name"}

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the project a name.")
        return name


class AddMemberForm(forms.Form):
    who = forms.CharField(label="Username or email", max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_who(self):
        who = self.cleaned_data["who"].strip()
        users = get_user_model().objects.filter(
            Q(username__iexact=who) | Q(email__iexact=who), is_active=True
        )
        matches = list(users[:2])
        if not matches:
            raise forms.ValidationError(f"No one called “{who}” has an account here.")
        if len(matches) > 1:
            raise forms.ValidationError("Several people share that email; use their username.")
        user = matches[0]
        if self.project.memberships.filter(user=user).exists():
            raise forms.ValidationError(f"{user.get_username()} is already a member.")
        return user


class ChangeRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)

    @classmethod
    def for_member(cls, membership: Membership) -> "ChangeRoleForm":
        """The role menu on one member's row: its own ids ("role-7"), labelled with whose role it is."""
        form = cls(initial={"role": membership.role}, auto_id=f"%s-{membership.pk}")
        form.fields["role"].label = f"Role of {membership.user.get_username()}"
        return form


class CommentForm(forms.Form):
    """Renders the comment box; review.comment_add applies the rules."""

    body = forms.CharField(
        label="Add a comment",
        max_length=COMMENT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Add a comment for the team"}),
    )


PROMPT_SEARCH_MAX_CHARS = 300


class PromptSearchForm(forms.Form):
    """Renders the prompt history's search box; the view reads and tidies `q` itself."""

    q = forms.CharField(
        label="Search prompts", required=False, max_length=PROMPT_SEARCH_MAX_CHARS, widget=forms.SearchInput
    )


class SpendPeriodForm(forms.Form):
    PERIODS = [("this_month", "This month"), ("last_month", "Last month"), ("custom", "Chosen dates")]
    period = forms.ChoiceField(choices=PERIODS, initial="this_month", required=False)
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    MAX_DAYS = 366

    def clean(self) -> dict:
        data = super().clean()
        today = timezone.localdate()
        period = data.get("period") or "this_month"
        if period == "this_month":
            data["start"], data["end"] = today.replace(day=1), today
        elif period == "last_month":
            last_day = today.replace(day=1) - timedelta(days=1)
            data["start"], data["end"] = last_day.replace(day=1), last_day
        else:
            start, end = data.get("start"), data.get("end")
            if start is None or end is None:
                if "start" not in self.errors and "end" not in self.errors:
                    self.add_error("start", "Choose both dates.")
            elif end < start:
                self.add_error("end", "The end date is before the start date.")
            elif (end - start).days >= self.MAX_DAYS:
                self.add_error("end", "Choose at most a year at a time.")
        return data


BUDGET_SCOPES = [("user", "A person"), ("project", "A project"), ("workspace", "The whole workspace")]
CHOOSE_ONE = "Choose a person or a project."


def _check_budget_target(form: forms.Form, *, scope: str, user, project) -> None:
    """Field errors for who a budget is for, so neither form ever shows the database's constraint."""
    if scope == "user" and user is None and "user" not in form.errors:
        form.add_error("user", CHOOSE_ONE)
    elif scope == "project" and project is None and "project" not in form.errors:
        form.add_error("project", CHOOSE_ONE)
    elif scope == "workspace" and (user is not None or project is not None):
        where = "user" if user is not None else "project"
        form.add_error(where, "A workspace budget is for everyone; leave the person and project empty.")
    elif scope in ("user", "project") and user is not None and project is not None:
        form.add_error("project", "Choose a person or a project, not both: give each its own budget.")


def _budget_limit_field(*, required: bool) -> forms.DecimalField:
    return forms.DecimalField(
        label="Monthly budget ($)",
        required=required,
        min_value=0,
        max_value=MAX_MONTHLY_BUDGET,
        max_digits=10,
        decimal_places=2,
        error_messages={
            "min_value": "A budget cannot be negative.",
            "max_value": f"That is more than ${MAX_MONTHLY_BUDGET:,} a month; check it.",
            "max_decimal_places": "Give the budget in dollars and cents (at most 2 decimal places).",
        },
        help_text="US dollars per calendar month. 0 stops all new jobs; empty removes the budget.",
    )


class BudgetForm(forms.Form):
    """Set, change or remove a monthly budget on the spend dashboard (spend.budget_set does it)."""

    scope = forms.ChoiceField(label="Budget for", choices=BUDGET_SCOPES, initial="user")
    user = forms.ModelChoiceField(
        label="Person",
        required=False,
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        empty_label="Choose a person",
    )
    project = forms.ModelChoiceField(
        label="Project",
        required=False,
        queryset=Project.objects.filter(archived_at__isnull=True).order_by("name"),
        empty_label="Choose a project",
    )
    monthly_limit = _budget_limit_field(required=False)

    def clean(self) -> dict:
        data = super().clean()
        scope = data.get("scope") or "user"
        # Only the chosen kind's menu counts: the other may still hold an earlier pick in the browser.
        user = data.get("user") if scope == "user" else None
        project = data.get("project") if scope == "project" else None
        _check_budget_target(self, scope=scope, user=user, project=project)
        data["user"], data["project"] = user, project
        return data


class BudgetAdminForm(forms.ModelForm):
    """The admin's budget form: field errors instead of "Constraint … is violated"."""

    scope = forms.ChoiceField(
        label="Budget for",
        choices=BUDGET_SCOPES,
        initial="user",
        help_text="The whole workspace: one cap across every person and project.",
    )

    class Meta:
        model = Budget
        fields = ["scope", "user", "project", "monthly_limit"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        budget = self.instance
        if budget.pk:
            self.initial["scope"] = (
                "user" if budget.user_id else "project" if budget.project_id else "workspace"
            )

    def clean(self) -> dict:
        data = super().clean()
        _check_budget_target(
            self, scope=data.get("scope") or "user", user=data.get("user"), project=data.get("project")
        )
        return data


class ImageModelSpecAdminForm(forms.ModelForm):
    """The registry row as an admin edits it: the lists checked value by value, in words."""

    LISTS = {
        "qualities": ("auto", "low", "medium", "high", "xhigh", "max"),
        "input_fidelity": ("low", "high"),
        "complexity": im.COMPLEXITY_LEVELS,
    }

    class Meta:
        model = ImageModelSpec
        fields = [field.name for field in ImageModelSpec._meta.fields if field.name != "id"]

    # Size rules divided by or compared against: 0 made every custom size a ZeroDivisionError (a 500
    # on the job form) or refused every size.
    AT_LEAST_ONE = ("size_multiple", "max_ratio", "max_edge")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in self.AT_LEAST_ONE:
            self.fields[name].min_value = 1
            self.fields[name].validators.append(MinValueValidator(1))
            self.fields[name].widget.attrs["min"] = 1

    def _list(self, name: str) -> list:
        value = self.cleaned_data.get(name)
        if value in (None, ""):
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise forms.ValidationError('Give a list of names, e.g. ["low", "high"].')
        return value

    def clean_sizes(self) -> list:
        sizes = self._list("sizes")
        for size in sizes:
            width, _, height = size.partition("x")
            if not (width.isdigit() and height.isdigit()):
                raise forms.ValidationError(f"“{size}” is not WIDTHxHEIGHT (for example 1024x1536).")
        if not sizes:
            raise forms.ValidationError("List at least one standard size.")
        return sizes

    def clean_svg_authors(self) -> list:
        return self._list("svg_authors")

    def clean(self) -> dict:
        data = super().clean()
        for name, allowed in self.LISTS.items():
            if name in self.errors:
                continue
            try:
                values = self._list(name)
            except forms.ValidationError as error:
                self.add_error(name, error)
                continue
            unknown = [value for value in values if value not in allowed]
            if unknown:
                self.add_error(name, f"Unknown: {', '.join(unknown)}. Allowed: {', '.join(allowed)}.")
        if "qualities" not in self.errors and not data.get("qualities"):
            self.add_error("qualities", "List at least one quality.")
        return data


class AuditFilterForm(forms.Form):
    """The audit page's filters: one action, one project (both optional)."""

    action = forms.ChoiceField(required=False, label="Action")
    project = forms.ModelChoiceField(
        queryset=None, required=False, label="Project", empty_label="Any project"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "Any action"), *AuditEvent.Action.choices]
        self.fields["project"].queryset = Project.objects.order_by("name")


class WebhookForm(forms.Form):
    """A webhook endpoint as an owner registers it; webhooks.endpoint_add checks where it leads."""

    url = forms.URLField(
        label="Endpoint URL",
        max_length=500,
        assume_scheme="https",
        help_text="An https:// address on the public internet; every message is signed.",
    )
    description = forms.CharField(label="Description", max_length=120, required=False)
    events = forms.MultipleChoiceField(
        label="Events",
        choices=[(event.value, event.label) for event in SUBSCRIBABLE],
        widget=forms.CheckboxSelectMultiple,
        initial=[event.value for event in SUBSCRIBABLE[:2]],
        error_messages={"required": "Choose at least one event."},
    )


class TurnForm(forms.Form):
    message = forms.CharField(
        label="Your message",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Say what to change; everything else is kept. For example: make the jacket red.",
    )


class CredentialCheckForm(forms.Form):
    file = forms.FileField(
        label="Photo to check",
        help_text="PNG, JPEG, WebP or GIF. It is sent to OpenAI's provenance check and not stored.",
    )
