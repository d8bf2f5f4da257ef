"""Brand kits, prompt templates and campaigns: what a job can be made from, kept so every output can say
exactly which version of which made it.

A kit and a template are a name plus numbered versions. A version is never changed once saved (its
`save` refuses an update): editing makes the next number, so an image made from version 3 still says
version 3, with version 3's words, after anyone edits the template. The references of a version are
set once, by `workspace.kits` in the transaction that creates it.

The job side of the binding (`Job.template_version`, `brand_kit_version`, `variables`, `campaign`,
`campaign_row`, `cell`) is declared on `Job` in models.py; jobs are made by `workspace.campaigns`.
"""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from workspace.models import Project, Reference

# The request fields a kit or a template may set a default for (a subset of Job.REQUEST_FIELDS; the
# size is stored as the form gives it: a preset's key and the WIDTHxHEIGHT it resolves to). They are
# the parameters a variant grid can vary (model, quality, size, planning effort = complexity) plus the
# output format, so "use this cell as the new default" can store every axis a cell differs on.
DEFAULT_FIELDS = ("model", "size_preset", "size", "output_format", "quality", "complexity")
# A kit is a look, not a choice of model: it keeps to the size, format and quality.
KIT_DEFAULT_FIELDS = ("size_preset", "size", "output_format", "quality")


class Immutable(models.Model):
    """A version: written once, read forever. Updating one would rewrite what old images say."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError(f"{type(self).__name__} rows are never changed; save a new version instead.")
        super().save(*args, **kwargs)


class Versioned(models.Model):
    """The named, archivable thing whose content lives in numbered versions."""

    name = models.CharField(max_length=120)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name

    @property
    def latest(self):
        """The newest version (what "use" means); None only inside the transaction that creates it."""
        if "_latest" not in self.__dict__:
            self.__dict__["_latest"] = self.versions.order_by("-number").first()
        return self.__dict__["_latest"]


class BrandKit(Versioned):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="brand_kits")

    class Meta:
        ordering = ["name", "id"]

    def get_absolute_url(self) -> str:
        return reverse("kit_detail", args=[self.project_id, self.pk])


class BrandKitVersion(Immutable):
    """One version of a kit: how it styles a prompt (see prompting.compose_with_kit), the references it
    adds as inputs, and the defaults it fills."""

    kit = models.ForeignKey(BrandKit, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    style_words = models.CharField(max_length=500, blank=True)
    art_direction = models.TextField(max_length=2000, blank=True)
    # "#rrggbb" strings, lower case, in the order chosen.
    palette = models.JSONField(default=list, blank=True)
    avoid = models.TextField(max_length=1000, blank=True)
    # KIT_DEFAULT_FIELDS only.
    defaults = models.JSONField(default=dict, blank=True)
    references = models.ManyToManyField(Reference, blank=True, related_name="brand_kit_versions")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kit", "-number"]
        constraints = [models.UniqueConstraint(fields=["kit", "number"], name="one_kit_version_number")]

    def __str__(self) -> str:
        return f"{self.kit.name} v{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("kit_version", args=[self.kit.project_id, self.kit_id, self.number])


class PromptTemplate(Versioned):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompt_templates")

    class Meta:
        ordering = ["name", "id"]

    def get_absolute_url(self) -> str:
        return reverse("template_detail", args=[self.project_id, self.pk])


class TemplateVersion(Immutable):
    """One version of a template: its text with `{variables}`, an optional kit version, references
    (which make its jobs edits) and defaults."""

    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    text = models.TextField()
    # The variable names in order of first appearance, as prompting.parse_template found them.
    variables = models.JSONField(default=list)
    brand_kit_version = models.ForeignKey(
        BrandKitVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="template_versions"
    )
    references = models.ManyToManyField(Reference, blank=True, related_name="template_versions")
    # DEFAULT_FIELDS only.
    defaults = models.JSONField(default=dict, blank=True)
    # {variable: value}: each variable's default value, filled in when the template is used (Studio,
    # grid) and shown by the preview; a subset of `variables`, never blank values.
    samples = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="one_template_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("template_version", args=[self.template.project_id, self.template_id, self.number])


class CampaignQuerySet(models.QuerySet):
    """A campaign's own state changes, one method per arrow, each one conditional UPDATE naming the
    state(s) it leaves, returning whether it won (as JobQuerySet does for jobs):

      start     draft → active              its jobs were queued in the same transaction
      pause     active → paused             its waiting jobs are not claimed (models._not_paused)
      resume    paused → active
      cancel    active / paused → canceled  its waiting jobs are canceled in the same transaction
      reopen    finished / canceled → active  failed jobs queued again
      finish    active / paused / canceled, nothing left to run → finished (or stays canceled),
                stamped finished_at
    """

    def _move(self, campaign_id: int, sources: list[str], **fields) -> bool:
        return bool(self.filter(pk=campaign_id, status__in=sources).update(**fields))

    def start(self, campaign_id: int, **fields) -> bool:
        return self._move(campaign_id, [Campaign.Status.DRAFT], status=Campaign.Status.ACTIVE, **fields)

    def pause(self, campaign_id: int) -> bool:
        return self._move(campaign_id, [Campaign.Status.ACTIVE], status=Campaign.Status.PAUSED)

    def resume(self, campaign_id: int) -> bool:
        return self._move(campaign_id, [Campaign.Status.PAUSED], status=Campaign.Status.ACTIVE)

    def cancel(self, campaign_id: int) -> bool:
        running = [Campaign.Status.ACTIVE, Campaign.Status.PAUSED]
        return self._move(campaign_id, running, status=Campaign.Status.CANCELED)

    def reopen(self, campaign_id: int) -> bool:
        ended = [Campaign.Status.FINISHED, Campaign.Status.CANCELED]
        return self._move(campaign_id, ended, status=Campaign.Status.ACTIVE, finished_at=None)

    def finish(self, campaign_id: int, *, unfinished_jobs, canceled: bool) -> bool:
        """No job left to run (`unfinished_jobs`: an Exists of its active jobs) → finished, or for a
        canceled campaign, canceled and stamped. Of two callers at once, one wins."""
        leaving = [Campaign.Status.ACTIVE, Campaign.Status.PAUSED, Campaign.Status.CANCELED]
        ending = Campaign.Status.CANCELED if canceled else Campaign.Status.FINISHED
        return bool(
            self.filter(pk=campaign_id, status__in=leaving, finished_at__isnull=True)
            .exclude(unfinished_jobs)
            .update(status=ending, finished_at=timezone.now())
        )


class Campaign(models.Model):
    """Bulk work made from one template (or prompt) and kit: a variant grid or a catalog batch.

    Its jobs point at it (`Job.campaign`) and carry their row or grid cell; the campaign keeps what
    they share. A catalog batch starts as a draft holding its validated rows (workspace.batches), so the
    preview and the confirm use what the server parsed, never a re-posted form; confirming queues the
    jobs and the campaign runs (workspace.campaign_runs: pause, resume, cancel, retry, finish).
    """

    class Kind(models.TextChoices):
        GRID = "grid", "Variant grid"
        BATCH = "batch", "Catalog batch"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Running"
        PAUSED = "paused", "Paused"
        CANCELED = "canceled", "Canceled"
        FINISHED = "finished", "Finished"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="campaigns")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=120)
    template_version = models.ForeignKey(
        TemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    brand_kit_version = models.ForeignKey(
        BrandKitVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    # A grid from a plain prompt (no template) keeps its prompt here.
    prompt = models.TextField(blank=True)
    # Job.REQUEST_FIELDS every job shares before its axes or row change them.
    base_params = models.JSONField(default=dict, blank=True)
    # A grid's axes: [{"name": "quality", "values": ["low", "high"]}, ...]; empty for a batch.
    axes = models.JSONField(default=list, blank=True)
    # A batch's CSV column that names each row's files in the ZIP (for example "sku").
    key_column = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # "Run overnight (half price, ready within 24 h)": the lane and the estimate follow
    # campaigns.campaign_lane, the one place that reads it.
    overnight = models.BooleanField(default=False)
    # A batch: the CSV's columns (in file order) and, while a draft, its validated rows
    # ([{"row": 2, "values": {...}, "reference_id": 7 | None}, ...]); the jobs carry them once queued.
    columns = models.JSONField(default=list, blank=True)
    rows = models.JSONField(default=list, blank=True)
    source_name = models.CharField(max_length=255, blank=True)
    # What was held back from the budgets when it was queued (the sum of its jobs' estimates).
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at", "-id"], name="campaign_project_recent")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("campaign_detail", args=[self.project_id, self.pk])

    @property
    def is_running(self) -> bool:
        """Work may still happen: its page keeps polling."""
        return self.status in (self.Status.ACTIVE, self.Status.PAUSED)
