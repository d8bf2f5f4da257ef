"""One place that knows how to build a valid row.

Every factory gives a row the app itself could have written: a job has the request fields the form
would send and a deadline, an image has a real PNG and WebP thumbnail in storage (at the path the worker
uses), a favourite copies its image's project and date like `Favourite.of`. Tests name only what
matters to them:

    project = ProjectFactory(created_by=alice, members={bob: Role.EDITOR})   # alice owns it
    image = ImageFactory(job__project=project)                              # a succeeded job's output
    edit = JobFactory(project=project, edit=True, inputs=[image], masked=True, previewed=True)
"""

import hashlib
import io

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from factory.django import DjangoModelFactory
from PIL import Image as PILImage

from workspace import formats, outputs, webhooks
from workspace.models import Comment, Favourite, Image, Job, JobInput, Membership, Project, Reference, Role
from workspace.webhook_models import WebhookDelivery, WebhookEndpoint

PASSWORD = "pass-for-tests-1"

# What the generation form sends for a plain square image (tests.conftest.job_params hands out copies).
JOB_PARAMS = {
    "model": "gpt-image-2",
    "size": "1024x1024",
    "size_preset": "square",
    "quality": "low",
    "output_format": "png",
    "output_compression": None,
    "background": "auto",
    "moderation": "auto",
    "complexity": "",
    "n": 1,
}

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def picture(*, width: int = 64, height: int = 48, colour=(200, 120, 40), fmt: str = "png") -> bytes:
    """A small image of one colour, encoded as png, jpeg or webp."""
    out = io.BytesIO()
    mode = "RGB" if fmt == "jpeg" else "RGBA"
    PILImage.new(mode, (width, height), colour).save(out, format=PIL_FORMATS[fmt])
    return out.getvalue()


def mask_png(*, width: int = 64, height: int = 48) -> bytes:
    """A mask the size of a default picture: opaque except a transparent square to repaint."""
    mask = PILImage.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (width // 4, height // 4, width // 2, height // 2))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


def thumbnail(data: bytes) -> bytes:
    with PILImage.open(io.BytesIO(data)) as image:
        return outputs.make_thumbnail(image)


def _store(name: str, data: bytes) -> str:
    """Save through the storage API, as the app does; the name may come back changed if taken."""
    return default_storage.save(name, ContentFile(data))


class UserFactory(DjangoModelFactory):
    """Everyone gets the same password (tests log in with it); `is_staff=True` for staff."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password(PASSWORD)


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory("tests.factories.ProjectFactory")
    user = factory.SubFactory(UserFactory)
    role = Role.EDITOR


class ProjectFactory(DjangoModelFactory):
    """A project its creator owns. `members={user: role}` adds the rest of the team in one go."""

    class Meta:
        model = Project
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Project {n}")
    created_by = factory.SubFactory(UserFactory)

    @factory.post_generation
    def members(project, create, extracted, **kwargs):
        if not create:
            return
        roles = {project.created_by: Role.OWNER} | dict(extracted or {})
        for user, role in roles.items():
            MembershipFactory(project=project, user=user, role=role)


class JobFactory(DjangoModelFactory):
    """A queued job exactly as the web request makes it (without sending the message).

    Traits: `succeeded=True` (finished, one attempt), `edit=True` (an edit; pass `inputs=[image or
    reference, ...]` for its JobInput rows). Params: `masked=True` stores a mask as edit_create does
    (`marked_up=True` a markup),
    `previewed=True` stores a streamed partial image as the worker does.
    """

    class Meta:
        model = Job
        skip_postgeneration_save = True

    class Params:
        succeeded = factory.Trait(
            status=Job.Status.SUCCEEDED,
            attempts=1,
            started_at=factory.LazyFunction(timezone.now),
            finished_at=factory.LazyFunction(timezone.now),
        )
        edit = factory.Trait(kind=Job.Kind.EDIT, size="auto", size_preset="auto")
        masked = False
        marked_up = False
        previewed = False

    project = factory.SubFactory(ProjectFactory)
    author = factory.SelfAttribute("project.created_by")
    prompt = "A lemon on a blue tiled table, morning light"
    model = JOB_PARAMS["model"]
    size = JOB_PARAMS["size"]
    size_preset = JOB_PARAMS["size_preset"]
    quality = JOB_PARAMS["quality"]
    output_format = JOB_PARAMS["output_format"]
    output_compression = JOB_PARAMS["output_compression"]
    background = JOB_PARAMS["background"]
    moderation = JOB_PARAMS["moderation"]
    complexity = JOB_PARAMS["complexity"]
    n = JOB_PARAMS["n"]
    max_attempts = 5
    deadline_at = factory.LazyFunction(Job.new_deadline)
    enqueued_at = factory.LazyFunction(timezone.now)  # as job_create stamps it
    mask = factory.Maybe(
        "masked",
        factory.LazyAttribute(lambda job: _store(f"projects/{job.project.pk}/masks/mask.png", mask_png())),
        "",
    )
    markup = factory.Maybe(
        "marked_up",
        factory.LazyAttribute(
            lambda job: _store(f"projects/{job.project.pk}/markups/markup.png", mask_png())
        ),
        "",
    )
    preview = factory.Maybe(
        "previewed",
        factory.LazyAttribute(
            lambda job: _store(f"projects/{job.project.pk}/previews/preview-0.png", picture(colour=(9, 9, 9)))
        ),
        "",
    )
    preview_count = factory.Maybe("previewed", 1, 0)

    @factory.post_generation
    def inputs(job, create, extracted, **kwargs):
        """The edit's inputs in order: Images and References, the first one edited."""
        if not create or not extracted:
            return
        JobInput.objects.bulk_create(
            JobInput(
                job=job,
                position=position,
                image=source if isinstance(source, Image) else None,
                reference=source if isinstance(source, Reference) else None,
            )
            for position, source in enumerate(extracted)
        )


class ImageFactory(DjangoModelFactory):
    """An output of a succeeded job: a real picture and its WebP thumbnail in storage.

    `colour`, `width`, `height` and `format` shape the picture; `pasted=True` also stores the composite
    (a masked edit's output pasted back onto the original) and its thumbnail. `stored=False` makes a
    row only, with made-up file names, for tests that list images without reading them.
    """

    class Meta:
        model = Image
        exclude = ("data", "folder")

    class Params:
        colour = (200, 120, 40)
        pasted = False
        stored = True

    job = factory.SubFactory(JobFactory, succeeded=True)
    project = factory.SelfAttribute("job.project")
    index = factory.LazyAttribute(lambda image: Image.objects.filter(job=image.job).count())
    width = 64
    height = 48
    format = factory.SelfAttribute("job.output_format")
    author = factory.SelfAttribute("job.author")
    model = factory.SelfAttribute("job.model")
    kind = factory.SelfAttribute("job.kind")
    created_at = factory.LazyFunction(timezone.now)

    data = factory.Maybe(
        "stored",
        factory.LazyAttribute(
            lambda image: picture(
                width=image.width, height=image.height, colour=image.colour, fmt=image.format
            )
        ),
        b"",  # rows only: no picture to encode (a 1024 px PNG costs 20 ms, and galleries list hundreds)
    )
    folder = factory.LazyAttribute(lambda image: f"projects/{image.project.pk}/jobs/{image.job.pk}/a1-")
    file = factory.Maybe(
        "stored",
        factory.LazyAttribute(
            lambda image: _store(f"{image.folder}{image.index}.{formats.extension(image.format)}", image.data)
        ),
        factory.LazyAttribute(lambda image: f"{image.folder}{image.index}.{image.format}"),
    )
    thumbnail = factory.Maybe(
        "stored",
        factory.LazyAttribute(
            lambda image: _store(f"{image.folder}{image.index}.thumb.webp", thumbnail(image.data))
        ),
        factory.LazyAttribute(lambda image: f"{image.folder}{image.index}.thumb.webp"),
    )
    bytes = factory.LazyAttribute(lambda image: len(image.data))
    sha256 = factory.LazyAttribute(lambda image: hashlib.sha256(image.data).hexdigest())
    composite = factory.Maybe(
        "pasted",
        factory.LazyAttribute(
            lambda image: _store(
                f"{image.folder}{image.index}.composite.png",
                picture(width=image.width, height=image.height, colour=(10, 200, 90)),
            )
        ),
        "",
    )
    composite_thumbnail = factory.Maybe(
        "pasted",
        factory.LazyAttribute(
            lambda image: _store(
                f"{image.folder}{image.index}.composite.thumb.webp",
                thumbnail(picture(width=image.width, height=image.height, colour=(10, 200, 90))),
            )
        ),
        "",
    )


class ReferenceFactory(DjangoModelFactory):
    """An image in a project's library, stored as the upload would leave it (re-encoded, thumbnailed)."""

    class Meta:
        model = Reference
        exclude = ("data",)

    class Params:
        colour = (40, 120, 200)

    project = factory.SubFactory(ProjectFactory)
    uploaded_by = factory.SelfAttribute("project.created_by")
    name = factory.Sequence(lambda n: f"product shot {n}.png")
    width = 64
    height = 48
    format = "png"
    data = factory.LazyAttribute(
        lambda ref: picture(width=ref.width, height=ref.height, colour=ref.colour, fmt=ref.format)
    )
    file = factory.LazyAttribute(
        lambda ref: _store(
            f"projects/{ref.project.pk}/references/r.{formats.extension(ref.format)}", ref.data
        )
    )
    thumbnail = factory.LazyAttribute(
        lambda ref: _store(f"projects/{ref.project.pk}/references/r.thumb.webp", thumbnail(ref.data))
    )
    bytes = factory.LazyAttribute(lambda ref: len(ref.data))
    uploaded_bytes = factory.SelfAttribute("bytes")
    sha256 = factory.LazyAttribute(lambda ref: hashlib.sha256(ref.data).hexdigest())


class CommentFactory(DjangoModelFactory):
    class Meta:
        model = Comment

    image = factory.SubFactory(ImageFactory)
    author = factory.SelfAttribute("image.author")
    body = "Lovely light; can we try it in blue?"


class FavouriteFactory(DjangoModelFactory):
    """A star, built by `Favourite.of` so the copies of the image's project and date are the model's."""

    class Meta:
        model = Favourite

    user = factory.SubFactory(UserFactory)
    image = factory.SubFactory(ImageFactory)

    @classmethod
    def _build(cls, model_class, *args, user, image, **kwargs):
        favourite = model_class.of(user=user, image=image)
        for name, value in kwargs.items():
            setattr(favourite, name, value)
        return favourite

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        favourite = cls._build(model_class, *args, **kwargs)
        favourite.save()
        return favourite


class WebhookEndpointFactory(DjangoModelFactory):
    """An endpoint as an owner registers it (with a real secret), wanting both job events."""

    class Meta:
        model = WebhookEndpoint

    project = factory.SubFactory(ProjectFactory)
    url = "https://93.184.215.14/hooks/atelier"
    events = factory.LazyFunction(lambda: ["job.succeeded", "job.failed"])
    secret = factory.LazyFunction(webhooks.secret_new)


class WebhookDeliveryFactory(DjangoModelFactory):
    """A delivery that was tried once and failed for good (so it may be redelivered)."""

    class Meta:
        model = WebhookDelivery

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    message_id = factory.Sequence(lambda n: f"msg_test{n}")
    event_type = "webhook.ping"
    body = '{"type":"webhook.ping","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    status = WebhookDelivery.Status.FAILED
    attempts = 1
    max_attempts = 1


def brand_kit_version(*, project, author=None, name="House style", **content):
    """A brand kit's newest version, saved as the kit form saves it (workspace.kits.kit_save).

    `kit=` gives an existing kit its next version; the rest is the version's content.
    """
    from workspace import kits

    content = {"style_words": "warm, editorial", "palette": ["#aabbcc"]} | content
    return kits.kit_save(
        project=project,
        author=author or project.created_by,
        kit=content.pop("kit", None),
        name=name,
        **content,
    )


def template_version(*, project, author=None, name="Product shot", text="A {product} on oak", **content):
    """A prompt template's newest version, saved as the template form saves it (kits.template_save).

    `template=` gives an existing template its next version.
    """
    from workspace import kits

    return kits.template_save(
        project=project,
        author=author or project.created_by,
        template=content.pop("template", None),
        name=name,
        text=text,
        **content,
    )
