from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from workspace import formats
from workspace import imagemodels as im
from workspace.models import Job, Membership, Project, Role
from workspace.review import COMMENT_MAX_CHARS

QUALITY_LABELS = {
    "auto": "Auto",
    "low": "Low (drafts)",
    "medium": "Medium",
    "high": "High",
    "xhigh": "Extra high",
    "max": "Max",
}


AUTO_SIZE = "auto"


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
    model = forms.ChoiceField(choices=[(m.id, m.label) for m in im.MODELS.values()], initial=im.DEFAULT_MODEL)
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
            elif problem := im.custom_size_problem(width, height):
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
        return data

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
