"""What the API answers (and, for the schema, what it takes). Validation of requests is the forms' job
(workspace.forms.GenerationForm / EditForm): the request serializers here only document the shape."""

from django.urls import reverse
from rest_framework import serializers

from workspace import imagemodels as im
from workspace.models import Image, Job, Project, Reference
from workspace.webhook_models import SUBSCRIBABLE, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.CharField(
        read_only=True, allow_null=True, help_text="Your role; null for staff outside it."
    )
    archived = serializers.BooleanField(source="is_archived", read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "role", "archived", "created_at"]


def _image_links(image: Image) -> dict:
    args = [image.project_id, image.pk]
    return {
        "self": reverse("api:image-detail", args=args),
        "download": reverse("api:image-download", args=args),
    }


class ImageSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    job = serializers.IntegerField(source="job_id")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    review_state = serializers.CharField()
    links = serializers.SerializerMethodField()

    def get_links(self, image: Image) -> dict[str, str]:
        return _image_links(image)


class JobSerializer(serializers.ModelSerializer):
    params = serializers.SerializerMethodField()
    images = serializers.SerializerMethodField()
    inputs = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "kind",
            "status",
            "prompt",
            "params",
            "inputs",
            "estimated_cost",
            "attempts",
            "error_code",
            "error_message",
            "retry_reason",
            "created_at",
            "started_at",
            "finished_at",
            "images",
            "links",
        ]

    def get_params(self, job: Job) -> dict[str, str | int | None]:
        return job.request_fields()

    def get_inputs(self, job: Job) -> list[str]:
        if not job.is_edit:
            return []
        return [
            f"img:{item.image_id}" if item.image_id else f"ref:{item.reference_id}"
            for item in job.inputs.all()
        ]

    def get_images(self, job: Job) -> list[dict]:
        if job.status != Job.Status.SUCCEEDED:
            return []
        images = Image.objects.visible().filter(job=job).order_by("index")
        return ImageSummarySerializer(images, many=True).data

    def get_links(self, job: Job) -> dict[str, str]:
        args = [job.project_id, job.pk]
        return {
            "self": reverse("api:job-detail", args=args),
            "cancel": reverse("api:job-cancel", args=args),
            "retry": reverse("api:job-retry", args=args),
        }


class GenerationRequestSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=im.MAX_PROMPT_CHARS)
    model = serializers.CharField(required=False, help_text=f"Default {im.DEFAULT_MODEL}.")
    size = serializers.CharField(
        required=False,
        help_text="A preset name (square, portrait, landscape…) or “custom” with width/height.",
    )
    width = serializers.IntegerField(required=False, allow_null=True)
    height = serializers.IntegerField(required=False, allow_null=True)
    quality = serializers.CharField(required=False)
    output_format = serializers.CharField(required=False)
    output_compression = serializers.IntegerField(required=False, allow_null=True)
    background = serializers.CharField(required=False)
    moderation = serializers.CharField(required=False)
    complexity = serializers.CharField(required=False, allow_blank=True)
    n = serializers.IntegerField(required=False, min_value=1, max_value=im.MAX_IMAGES_PER_JOB)
    frame_count = serializers.IntegerField(
        required=False, min_value=im.MIN_FRAMES, max_value=im.MAX_FRAMES, help_text="GIF output only."
    )
    frame_duration_ms = serializers.IntegerField(required=False, help_text="GIF output only.")
    svg_model = serializers.CharField(required=False, allow_blank=True, help_text="SVG output only.")
    svg_effort = serializers.CharField(required=False, allow_blank=True, help_text="SVG output only.")


class EditRequestSerializer(GenerationRequestSerializer):
    moderation = None
    input_fidelity = serializers.CharField(required=False, allow_blank=True)
    inputs = serializers.ListField(
        child=serializers.RegexField(r"^(img|ref):[0-9]{1,18}$"),
        help_text="Earlier images (“img:ID”) and references (“ref:ID”), in order; the first is edited.",
    )
    mask = serializers.CharField(
        required=False,
        help_text="Optional: a PNG the size of the first input, base64-encoded; its fully transparent "
        "pixels are where the edit paints (the edit form's rules).",
    )


class ReferenceSerializer(serializers.ModelSerializer):
    input = serializers.SerializerMethodField(help_text="How an edit names it in `inputs`.")

    class Meta:
        model = Reference
        fields = ["id", "name", "width", "height", "format", "bytes", "sha256", "created_at", "input"]

    def get_input(self, reference: Reference) -> str:
        return f"ref:{reference.pk}"


class ReferenceUploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField())


class ReferenceUploadResultSerializer(serializers.Serializer):
    references = ReferenceSerializer(many=True)
    rejected = serializers.DictField(
        child=serializers.CharField(), help_text="File name → why it was refused."
    )


class ImagePageSerializer(serializers.Serializer):
    images = ImageSummarySerializer(many=True)
    next_cursor = serializers.CharField(help_text="Pass as ?cursor= for the next page; empty on the last.")


class LineageInputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    input = serializers.CharField()


class VersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The template's or kit's id (not the version's).")
    name = serializers.CharField()
    version = serializers.IntegerField()


class TemplateRefSerializer(VersionRefSerializer):
    text = serializers.CharField(help_text="That version's text, as it was: versions never change.")


class CampaignRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    row = serializers.IntegerField(allow_null=True)
    cell = serializers.DictField(child=serializers.CharField())


class MadeWithSerializer(serializers.Serializer):
    template = TemplateRefSerializer(allow_null=True)
    variables = serializers.DictField(child=serializers.CharField())
    brand_kit = VersionRefSerializer(allow_null=True)
    campaign = CampaignRefSerializer(allow_null=True)


class TemplateVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Pass as `template_version_id` to run this version.")
    number = serializers.IntegerField()
    text = serializers.CharField()
    variables = serializers.ListField(child=serializers.CharField(), help_text="In order of appearance.")
    brand_kit = VersionRefSerializer(allow_null=True)
    references = serializers.ListField(child=serializers.IntegerField(), help_text="Library reference ids.")
    defaults = serializers.DictField(child=serializers.CharField())
    samples = serializers.DictField(
        child=serializers.CharField(), help_text="Default values of the variables, by name."
    )
    created_at = serializers.DateTimeField()


class TemplateVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Pass as `template_version_id` to run this version.")
    number = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(help_text="The author's username.")


class TemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    archived = serializers.BooleanField()
    latest = TemplateVersionSerializer(help_text="The newest version, which the Studio uses.")
    versions = TemplateVersionRefSerializer(many=True, help_text="Every version, newest first.")


class ImageDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    job = JobSerializer()
    index = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    format = serializers.CharField()
    bytes = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    review_state = serializers.CharField()
    parents = LineageInputSerializer(many=True, help_text="The inputs of the edit that made it.")
    children = serializers.ListField(child=serializers.IntegerField(), help_text="Images made from it.")
    ancestors = serializers.ListField(child=serializers.IntegerField(), help_text="Every earlier image.")
    links = serializers.DictField(child=serializers.CharField())
    made_with = MadeWithSerializer(help_text="The template and kit versions, values and campaign.")


class SpendSerializer(serializers.Serializer):
    spent = serializers.DecimalField(max_digits=14, decimal_places=6)
    simulated = serializers.DecimalField(max_digits=14, decimal_places=6)
    held = serializers.DecimalField(max_digits=14, decimal_places=6)
    limit = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    demo = serializers.BooleanField()


class UserSpendSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6)
    simulated_cost = serializers.DecimalField(max_digits=14, decimal_places=6)


class SpendReportSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    users = UserSpendSerializer(many=True)


class JobPageSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)
    next_cursor = serializers.CharField(help_text="Pass as ?cursor= for the next page; empty on the last.")


# --- Webhooks -----------------------------------------------------------------------------------------

EVENTS = [str(event) for event in SUBSCRIBABLE]


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint as listed: never its secret (shown once, on creation and on rotation)."""

    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENTS))
    previous_secret_valid_until = serializers.DateTimeField(
        source="overlap_until",
        allow_null=True,
        help_text="Until when the secret before a rotation signs too.",
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "created_at", "previous_secret_valid_until", "links"]

    def get_links(self, endpoint: WebhookEndpoint) -> dict[str, str]:
        args = [endpoint.project_id, endpoint.pk]
        return {
            "self": reverse("api:webhook-detail", args=args),
            "rotate": reverse("api:webhook-rotate", args=args),
            "ping": reverse("api:webhook-ping", args=args),
            "deliveries": reverse("api:webhook-deliveries", args=args),
        }


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret: shown this once, keep it.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookCreateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="An https:// address on the public internet.")
    description = serializers.CharField(max_length=120, required=False, allow_blank=True)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENTS), required=False, help_text="Default: both job events."
    )


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "ok", "http_status", "latency_ms", "response_excerpt", "error", "created_at"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True, help_text="Newest first.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "message_id",
            "event_type",
            "status",
            "attempts",
            "max_attempts",
            "created_at",
            "next_attempt_at",
            "finished_at",
            "attempt_log",
        ]


# --- Campaigns ------------------------------------------------------------------------------------------


class CampaignAxisSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="quality, size, model, … or var:NAME for a template variable.")
    values = serializers.ListField(child=serializers.CharField())


class CampaignProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Succeeded.")
    running = serializers.IntegerField()
    waiting = serializers.IntegerField()
    failed = serializers.IntegerField()
    canceled = serializers.IntegerField()
    percent = serializers.IntegerField(help_text="Ended (done, failed or canceled) of the total.")
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, help_text="Charged so far.")
    held = serializers.DecimalField(
        max_digits=14, decimal_places=6, help_text="Still reserved by its unfinished jobs."
    )


class CampaignSerializer(serializers.Serializer):
    """A campaign as listed: what it is, not how far it got (that is the detail's progress)."""

    id = serializers.IntegerField()
    # Plain strings, not enums: a job's kind and status enums already have those names in the schema.
    kind = serializers.CharField(help_text="grid or batch.")
    name = serializers.CharField()
    status = serializers.CharField(help_text="draft, active, paused, canceled or finished.")
    template = VersionRefSerializer(allow_null=True, help_text="The template version it was made from.")
    brand_kit = VersionRefSerializer(allow_null=True)
    overnight = serializers.BooleanField(help_text="Run in the overnight lane (half price, within 24 h).")
    axes = CampaignAxisSerializer(many=True, help_text="A grid's axes; empty for a batch.")
    key_column = serializers.CharField(help_text="A batch's column that names its files; may be empty.")
    columns = serializers.ListField(child=serializers.CharField(), help_text="A batch's CSV columns.")
    estimated_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    links = serializers.DictField(child=serializers.CharField())


class CampaignDetailSerializer(CampaignSerializer):
    progress = CampaignProgressSerializer()


class CampaignPageSerializer(serializers.Serializer):
    campaigns = CampaignSerializer(many=True)
    next_cursor = serializers.CharField(help_text="Pass as ?cursor= for the next page; empty on the last.")


class CampaignActionSerializer(serializers.Serializer):
    campaign = CampaignDetailSerializer()
    canceled = serializers.IntegerField(help_text="Cancel: how many waiting jobs were canceled; else 0.")
    queued = serializers.IntegerField(help_text="Retry: how many failed jobs were queued again; else 0.")


class BatchRequestSerializer(serializers.Serializer):
    template_id = serializers.IntegerField(
        help_text="A prompt template of this project (its newest version unless `template_version_id`)."
    )
    template_version_id = serializers.IntegerField(
        required=False, help_text="One of the template's versions (ids in the template list) to run instead."
    )
    csv = serializers.CharField(
        help_text="The CSV text: a header naming the template's variables (and optionally `reference`, a "
        "library reference's name), then one row per job."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    key_column = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="The column that names the files."
    )
    kit_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="A brand kit of this project."
    )
    model = serializers.CharField(required=False, allow_blank=True)
    quality = serializers.CharField(required=False, allow_blank=True)
    size = serializers.CharField(required=False, allow_blank=True, help_text="A size preset's name.")
    overnight = serializers.BooleanField(required=False, help_text="Half price, ready within 24 h.")
    confirm = serializers.BooleanField(
        help_text="false: check it and keep it as a draft (nothing queued); true: queue every row now."
    )


class BatchProblemSerializer(serializers.Serializer):
    row = serializers.IntegerField(allow_null=True, help_text="As a spreadsheet counts (1 is the header).")
    column = serializers.CharField(help_text="Empty when the problem is not one column's.")
    message = serializers.CharField()


class BatchErrorDetailSerializer(ErrorDetailSerializer):
    problems = BatchProblemSerializer(
        many=True, required=False, help_text="A refused CSV: each problem (the first 200)."
    )
    problem_count = serializers.IntegerField(required=False, help_text="A refused CSV: all its problems.")


class BatchErrorSerializer(serializers.Serializer):
    error = BatchErrorDetailSerializer()


class BatchUploadSerializer(BatchRequestSerializer):
    """The same batch as multipart form fields, the CSV as an uploaded `file` (over the JSON body's 1 MB)."""

    csv = None
    template_id = serializers.CharField(
        help_text="A prompt template of this project (its newest version unless `template_version_id`)."
    )
    template_version_id = serializers.CharField(
        required=False, help_text="One of the template's versions (ids in the template list) to run instead."
    )
    kit_id = serializers.CharField(required=False, allow_blank=True, help_text="A brand kit of this project.")
    file = serializers.FileField(help_text="The CSV file: up to 50 MB and 100,000 rows, as the batch page.")
    # Form fields are text: true/false (also 1/0, on/off, yes/no), as a form's checkbox sends them.
    overnight = serializers.BooleanField(required=False, help_text="Half price, ready within 24 h.")
    confirm = serializers.BooleanField(help_text="false: keep it as a draft; true: queue every row now.")


class OverBudgetErrorDetailSerializer(ErrorDetailSerializer):
    remaining = serializers.CharField(required=False, help_text="Dollars left of the budget this month.")
    needed = serializers.CharField(required=False, help_text="Dollars the whole campaign would hold.")


class OverBudgetErrorSerializer(serializers.Serializer):
    error = OverBudgetErrorDetailSerializer()


class CampaignConfirmSerializer(serializers.Serializer):
    key_column = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="Change the column that names the files (as the draft's page lets you); empty: by row.",
    )


class GridAxisRequestSerializer(serializers.Serializer):
    name = serializers.CharField(
        help_text="quality, model, size, complexity (planning effort), or var:NAME for a template variable."
    )
    values = serializers.ListField(
        child=serializers.CharField(), help_text="1 to 8 values (a parameter axis: its allowed values)."
    )


class GridRequestSerializer(serializers.Serializer):
    template_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="A prompt template of this project; or give `prompt`."
    )
    template_version_id = serializers.IntegerField(
        required=False, help_text="One of the template's versions to run (its newest when left out)."
    )
    prompt = serializers.CharField(required=False, allow_blank=True, help_text="Without a template.")
    variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="The template's variables that are not an axis: the same value in every cell.",
    )
    axes = GridAxisRequestSerializer(many=True, help_text="One axis, or two (first down, second across).")
    name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    kit_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="A brand kit of this project."
    )
    model = serializers.CharField(required=False, allow_blank=True)
    quality = serializers.CharField(required=False, allow_blank=True)
    size = serializers.CharField(required=False, allow_blank=True, help_text="A size preset's name.")
    overnight = serializers.BooleanField(required=False, help_text="Half price, ready within 24 h.")
    confirm = serializers.BooleanField(
        help_text="false: only plan it (every cell's prompt and estimate; nothing written); true: queue it."
    )


class GridPlanAxisSerializer(CampaignAxisSerializer):
    label = serializers.CharField()


class GridPlanCellSerializer(serializers.Serializer):
    values = serializers.DictField(child=serializers.CharField(), help_text="{axis: value}")
    prompt = serializers.CharField(help_text="Exactly what is sent.")
    params = serializers.DictField(help_text="The job's parameters: model, size, quality, …")
    estimated_cost = serializers.DecimalField(max_digits=14, decimal_places=6)


class GridPlanSerializer(serializers.Serializer):
    """A grid planned, not queued: what `confirm: true` would queue, and its total."""

    axes = GridPlanAxisSerializer(many=True)
    cells = GridPlanCellSerializer(many=True, help_text="Row-major: first axis down, second across.")
    estimated_cost = serializers.DecimalField(max_digits=14, decimal_places=6)


# --- Conversations --------------------------------------------------------------------------------------


class ConversationStartSerializer(serializers.Serializer):
    """Nothing to send: the conversation refines the image with the image's own model."""


class TurnRequestSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=4000, help_text="What to change; everything else is kept.")
    branch_from = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="A finished turn of this conversation: a new conversation continues from it (the "
        "page's Branch), and this message is its first turn.",
    )


class TurnSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    conversation = serializers.IntegerField()
    index = serializers.IntegerField()
    message = serializers.CharField()
    job = serializers.IntegerField()
    status = serializers.CharField(help_text="Its job's status: queued, running, succeeded, failed, …")
    error_message = serializers.CharField()
    parent = serializers.IntegerField(allow_null=True, help_text="The turn it continues.")
    source_image = serializers.IntegerField(help_text="The image it edits.")
    image = serializers.IntegerField(allow_null=True, help_text="Its image, once it has succeeded.")
    images = serializers.ListField(child=serializers.IntegerField(), help_text="Every image its job made.")
    estimated_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, help_text="Charged, from the ledger.")
    created_at = serializers.DateTimeField()


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    root_image = serializers.IntegerField(help_text="The image it started from.")
    branched_from = serializers.IntegerField(allow_null=True, help_text="The turn it was branched from.")
    image_model = serializers.CharField()
    mainline_model = serializers.CharField()
    model_problem = serializers.CharField(help_text="Why it cannot take a new turn; empty when it can.")
    created_at = serializers.DateTimeField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, help_text="Its turns' charges.")
    links = serializers.DictField(child=serializers.CharField())


class ConversationDetailSerializer(ConversationSerializer):
    turns = TurnSerializer(many=True)


class ConversationPageSerializer(serializers.Serializer):
    conversations = ConversationSerializer(many=True)
    next_cursor = serializers.CharField(help_text="Pass as ?cursor= for the next page; empty on the last.")
