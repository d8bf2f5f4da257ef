"""The forms of the grid and batch setup pages. They read and label; the services check the rest
(workspace.grids, workspace.batches)."""

from django import forms

from workspace import grids
from workspace import imagemodels as im
from workspace.campaign_models import BrandKit, PromptTemplate

KEEP = [("", "As the template says")]
MAX_CSV_BYTES = 50 * 1024 * 1024


def _templates(project):
    return PromptTemplate.objects.filter(project=project, archived_at__isnull=True).order_by("name", "id")


def _kits(project):
    return BrandKit.objects.filter(project=project, archived_at__isnull=True).order_by("name", "id")


class _Common(forms.Form):
    name = forms.CharField(max_length=120, required=False, help_text="Optional; a name is made up if empty.")
    kit = forms.ModelChoiceField(
        queryset=BrandKit.objects.none(),
        required=False,
        empty_label="None (or the template's own)",
        label="Brand kit",
    )
    model = forms.ChoiceField(required=False, choices=KEEP + [(m.id, m.label) for m in im.MODELS.values()])
    quality = forms.ChoiceField(
        required=False, choices=KEEP + [(q, q) for q in grids.allowed_values("quality")]
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
    axis1 = forms.ChoiceField(label="First axis")
    values1 = forms.CharField(label="Its values", help_text="Separated by commas.", max_length=2000)
    axis2 = forms.ChoiceField(label="Second axis (optional)", required=False)
    values2 = forms.CharField(label="Its values", required=False, max_length=2000)

    def __init__(self, *args, project, template_version=None, **kwargs) -> None:
        super().__init__(*args, project=project, **kwargs)
        self.fields["template"].queryset = _templates(project)
        self.template_version = template_version
        choices = grids.axis_choices(template_version)
        self.fields["axis1"].choices = choices
        self.fields["axis2"].choices = [("", "None"), *choices]
        # One field per variable: its value in every cell, unless the variable is an axis.
        for name in template_version.variables if template_version is not None else []:
            self.fields[f"var_{name}"] = forms.CharField(
                label=f"{{{name}}}",
                required=False,
                max_length=im.MAX_PROMPT_CHARS,
                help_text="Leave empty if it is an axis.",
            )

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


class BatchForm(_Common):
    template = forms.ModelChoiceField(queryset=PromptTemplate.objects.none(), empty_label=None)
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

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(f"The file is {upload.size:,} bytes; at most {MAX_CSV_BYTES:,}.")
        return upload
