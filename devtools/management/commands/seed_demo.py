"""``manage.py seed_demo``: fill a project with realistic rows, fast, for demos and the gallery bench.

What it makes (all deterministic for a given ``--seed``, except the database ids):

* members: an owner, editors (about 60 %) and viewers, named ``demo-<name>``, reused across seeds;
* jobs spread over ``--days`` (90) in working hours, fewer at weekends, each with 1-4 images; about 20 %
  are edits whose inputs point at an earlier image of the same project (sometimes a second input from the
  reference library, sometimes a painted mask, so lineage and pasted-back composites exist); a few jobs
  failed or were canceled and have no images;
* a mix of models (mostly gpt-image-2; the 2.5 models only in the last month), sizes and shapes (square,
  portrait, landscape, the story/widescreen/blog presets and custom sizes), qualities and formats;
* reviews (about 10 % approved, 3 % rejected), a few deleted images, favourites and comments;
* marketing prompts built from word lists, with a few rare words (axolotl, zeppelin, marzipan, ...) so
  full-text search has both common and rare terms to find;
* for a sample of jobs (``--usage-sample``), the API call with its token usage and the matching ledger
  charge, priced like the worker prices them.

Files: writing a real PNG and WebP per image would take minutes and gigabytes, so the command writes a
small shared set once per project through Django's storage, under ``projects/<id>/seed/`` (50 distinct
tiny pictures in five shapes, each as PNG, JPEG and WebP originals plus a WebP thumbnail, and one mask),
and points every image's ``file``/``thumbnail`` at the one matching its shape and format. ``bytes`` and
``sha256`` are those of the stored file, so downloads and ZIP manifests stay truthful.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageDraw

from workspace import formats, imagemodels, spend
from workspace.models import (
    ApiCall,
    Comment,
    Favourite,
    Image,
    Job,
    JobInput,
    LedgerEntry,
    Membership,
    Project,
    Reference,
    Role,
)

BATCH = 5_000
DEFAULT_PROJECT = "Demo: spring campaign"
USER_NAMES = (
    "ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hugo",
    "iris", "jonas", "kemi", "leo", "maya", "nils", "olu", "priya",
)  # fmt: skip

# --- Prompts -----------------------------------------------------------------------------------------
PRODUCTS = (
    "a sparkling lemonade can", "an oat milk carton", "a trail running shoe", "a ceramic coffee mug",
    "wireless earbuds in their case", "a linen summer dress", "a skincare serum bottle", "an electric bike",
    "an artisan sourdough loaf", "a smartwatch with a green strap", "a scented soy candle",
    "a waxed canvas backpack", "a bottle of cold brew coffee", "a pair of sunglasses", "a yoga mat",
    "a bar of dark chocolate", "a reusable water bottle", "a denim jacket", "a box of macarons",
    "a vintage film camera", "a houseplant in a terracotta pot", "a stack of paperback books",
    "a strawberry smoothie", "a leather wallet", "a bluetooth speaker", "a jar of wildflower honey",
    "a set of kitchen knives", "a pair of headphones", "a cotton tote bag", "a sparkling rosé bottle",
)  # fmt: skip
SETTINGS = (
    "on a blue tiled kitchen counter", "in a sunlit greenhouse", "on a marble bathroom shelf",
    "at a rooftop party at dusk", "on a sandy beach with soft waves", "on a picnic blanket in a meadow",
    "in a minimalist white studio", "on a wooden cafe table", "in a rainy city street at night",
    "on a mountain trail at sunrise", "in a cozy living room with a fireplace", "on a pastel pink backdrop",
    "next to a swimming pool", "in a busy farmers market", "on a concrete plinth with palm shadows",
    "in a Scandinavian kitchen", "on a desk with a laptop and notebook", "in a field of sunflowers",
)  # fmt: skip
LIGHTING = (
    "soft morning light", "golden hour light", "studio softbox lighting", "hard midday sun",
    "neon glow", "candlelight", "overcast diffused light", "dramatic rim lighting", "dappled shade",
)  # fmt: skip
STYLES = (
    "editorial product photography", "flat lay from above", "clean 3D render", "watercolour illustration",
    "isometric illustration", "35mm film look", "minimalist poster", "bold pop-art style",
    "lifestyle photography with a model", "macro close-up", "paper cut-out collage",
)  # fmt: skip
PURPOSES = (
    "for the spring launch banner", "for an Instagram story", "for the holiday gift guide hero",
    "for a billboard", "for the newsletter header", "for a product page", "for a TikTok ad",
    "for the summer sale email", "for a trade show poster", "for the homepage carousel",
)  # fmt: skip
EXTRAS = (
    "leave space for headline text on the left", "brand colours teal and coral", "no text",
    "shallow depth of field", "high contrast", "pastel palette", "square crop friendly",
    "with water droplets", "slightly playful mood", "premium and calm mood", "lots of negative space",
)  # fmt: skip
# Rare on purpose: a search for one of these finds a handful of jobs among tens of thousands.
RARE = (
    "an axolotl mascot", "a zeppelin in the sky", "marzipan decorations", "bioluminescent plankton",
    "an origami crane", "a quokka", "an art deco lighthouse", "a narwhal balloon",
)  # fmt: skip
RARE_RATE = 0.003
COLOURS = (
    "teal",
    "coral",
    "mustard yellow",
    "forest green",
    "lavender",
    "matte black",
    "cream",
    "cobalt blue",
)
PROPS = ("a sprig of mint", "ice cubes", "lemon slices", "a ceramic vase", "sunglasses", "a folded newspaper")
EDIT_TEMPLATES = (
    "Move the product {setting}",
    "Change the colour of the product to {colour}",
    "Add {prop} next to the product",
    "Remove the text and logo",
    "Make the light warmer, like {lighting}",
    "Extend the scene to the left for a wide banner",
    "Put {product} in the scene as well, {style}",
    "Make it look like {style}",
)
COMMENTS = (
    "Love this one.", "Can we try it with the logo on the right?", "Too dark for the banner.",
    "This is the direction, let's go.", "The hands look off, please redo.", "Approved by the client.",
    "Colours are a bit oversaturated.", "Maybe crop tighter?", "Perfect for the story format.",
    "Needs more contrast on the product.", "Use this for the A/B test.", "Legal asked to remove the text.",
)  # fmt: skip

# --- Jobs ----------------------------------------------------------------------------------------------
# (model id, weight before the last month, weight in the last month): the 2.5 models are new.
MODELS = (
    ("gpt-image-2", 78, 62),
    ("gpt-image-2.5-sunburst", 0, 12),
    ("gpt-image-2.5-flare", 0, 8),
    ("gpt-image-1.5", 14, 12),
    ("gpt-image-1-mini", 8, 6),
)
N_WEIGHTS = ((1, 45), (2, 20), (3, 10), (4, 25))
CUSTOM_SIZES = ("1280x720", "1088x1920", "1600x1200", "1200x1600", "2560x1440", "1360x768", "3840x2160")
QUALITIES = (("low", 30), ("medium", 35), ("high", 25), ("auto", 10))
FORMATS = (("png", 70), ("jpeg", 15), ("webp", 15))
EDIT_RATE = 0.20
MASK_RATE = 0.30  # of edits
SECOND_INPUT_RATE = 0.25  # of edits
FAILED_RATE = 0.03
CANCELED_RATE = 0.01
APPROVED_RATE = 0.10
REJECTED_RATE = 0.03
DELETED_RATE = 0.005
FAVOURITE_RATE = 0.04
COMMENT_RATE = 0.015
REFERENCES = 12
ERRORS = {
    "moderation_blocked": "The image service declined this prompt. Rephrase it and try again.",
    "rate_limit_exceeded": "The image service was too busy; we gave up after several tries.",
    "server_error": "The image service had a problem on its side; try again.",
}
REFERENCE_NAMES = ("Logo", "Product shot", "Mood board", "Packaging", "Model")
# Hours of the working day people make images, with their weights.
HOUR_WEIGHTS = (
    (7, 1), (8, 3), (9, 6), (10, 8), (11, 8), (12, 5), (13, 6), (14, 8), (15, 8), (16, 7), (17, 5),
    (18, 3), (19, 2), (20, 1), (21, 1), (22, 1),
)  # fmt: skip

# --- Files -------------------------------------------------------------------------------------------
SHAPES = {"square": (64, 64), "portrait": (43, 64), "landscape": (64, 43), "tall": (36, 64), "wide": (64, 36)}
VARIANTS = 10  # pictures per shape: 5 shapes x 10 = 50 distinct pictures
PALETTES = (
    ((20, 160, 150), (250, 120, 90)), ((240, 200, 60), (40, 60, 120)), ((120, 80, 200), (250, 240, 220)),
    ((30, 30, 30), (230, 80, 80)), ((200, 230, 240), (20, 110, 200)), ((250, 180, 200), (90, 160, 90)),
    ((60, 120, 80), (250, 250, 240)), ((250, 140, 30), (30, 50, 60)), ((180, 220, 120), (120, 40, 90)),
    ((240, 240, 240), (10, 140, 190)),
)  # fmt: skip
# The formats the worker stores, with Pillow's name for each (the workspace's one table).
# The still raster formats only: the demo makes no GIF or SVG answers.
PIL_FORMATS = {name: formats.FORMATS[name].pillow for name in formats.RASTER}


def shape_of(width: int, height: int) -> str:
    ratio = width / height
    if ratio >= 1.6:
        return "wide"
    if ratio >= 1.2:
        return "landscape"
    if ratio <= 1 / 1.6:
        return "tall"
    if ratio <= 1 / 1.2:
        return "portrait"
    return "square"


@dataclass(frozen=True)
class StoredFile:
    name: str
    bytes: int
    sha256: str


@dataclass
class SeedFiles:
    """The shared pictures: originals per (shape, variant, format), thumbnails per (shape, variant)."""

    originals: dict[tuple[str, int, str], StoredFile] = field(default_factory=dict)
    thumbnails: dict[tuple[str, int], str] = field(default_factory=dict)
    mask: str = ""
    names: list[str] = field(default_factory=list)


def _picture(shape: str, variant: int) -> PILImage.Image:
    width, height = SHAPES[shape]
    back, front = PALETTES[variant % len(PALETTES)]
    picture = PILImage.new("RGB", (width, height), back)
    draw = ImageDraw.Draw(picture)
    for row in range(height):  # a soft vertical gradient
        shade = int(40 * row / height)
        draw.line([(0, row), (width, row)], fill=tuple(max(0, c - shade) for c in back))
    size = min(width, height)
    left, top = (width - size // 2) // 2 + (variant % 3 - 1) * 6, (height - size // 2) // 2
    if variant % 2:
        draw.ellipse([left, top, left + size // 2, top + size // 2], fill=front)
    else:
        draw.rectangle([left, top, left + size // 2, top + size // 2], fill=front)
    draw.rectangle([0, height - 6, width, height], fill=front)
    return picture


def _encode(picture: PILImage.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    picture.save(out, format=PIL_FORMATS[fmt], **({"quality": 80} if fmt != "png" else {}))
    return out.getvalue()


def write_seed_files(project: Project) -> SeedFiles:
    files = SeedFiles()
    folder = f"projects/{project.pk}/seed"

    def save(name: str, data: bytes) -> StoredFile:
        stored = default_storage.save(f"{folder}/{name}", ContentFile(data))
        files.names.append(stored)
        return StoredFile(stored, len(data), hashlib.sha256(data).hexdigest())

    for shape in SHAPES:
        for variant in range(VARIANTS):
            picture = _picture(shape, variant)
            for fmt in PIL_FORMATS:
                files.originals[shape, variant, fmt] = save(
                    f"{shape}-{variant}.{formats.extension(fmt)}", _encode(picture, fmt)
                )
            files.thumbnails[shape, variant] = save(
                f"{shape}-{variant}.thumb.webp", _encode(picture, "webp")
            ).name
    mask = PILImage.new("RGBA", (64, 64), (0, 0, 0, 255))
    ImageDraw.Draw(mask).ellipse([16, 16, 48, 48], fill=(0, 0, 0, 0))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    files.mask = save("mask.png", out.getvalue()).name
    return files


def delete_folder(path: str) -> int:
    """Remove a folder's files through the storage API (recursively); returns how many went."""
    try:
        folders, names = default_storage.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for name in names:
        default_storage.delete(f"{path}/{name}")
        removed += 1
    for folder in folders:
        removed += delete_folder(f"{path}/{folder}")
    return removed


# --- Deleting a project fast -------------------------------------------------------------------------------


def _purge(model: type[models.Model], where: str, params: list, depth: int = 0) -> None:
    """DELETE rows matching `where`, first everything that points at them (any on_delete), in SQL.

    Django's collector would load every image to cascade; a project of 100,000 images goes in seconds
    this way. SET_NULL references are nulled, as Django would.
    """
    if depth > 8:
        raise CommandError(f"Relations too deep to purge at {model.__name__}.")
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    with connection.cursor() as cursor:
        for relation in model._meta.related_objects:
            if relation.many_to_many or relation.related_model is model:
                continue
            related = relation.related_model
            column = connection.ops.quote_name(relation.field.column)
            condition = f"{column} IN (SELECT {pk} FROM {table} WHERE {where})"  # noqa: S608
            if relation.on_delete is models.SET_NULL:
                cursor.execute(
                    f"UPDATE {connection.ops.quote_name(related._meta.db_table)} SET {column} = NULL "  # noqa: S608
                    f"WHERE {condition}",
                    params,
                )
            elif relation.on_delete is not models.DO_NOTHING:
                _purge(related, condition, params, depth + 1)
        cursor.execute(f"DELETE FROM {table} WHERE {where}", params)  # noqa: S608


def delete_project(project: Project) -> int:
    """Delete a project, everything in it (its spend ledger rows too) and its files; returns files removed."""
    with transaction.atomic():
        _purge(Project, f"{connection.ops.quote_name(Project._meta.pk.column)} = %s", [project.pk])
    return delete_folder(f"projects/{project.pk}")


# --- Seeding ------------------------------------------------------------------------------------------------


@dataclass
class SeedResult:
    project: Project
    users: list[Any]
    owner: Any
    counts: dict[str, int]
    seconds: float
    replaced: bool = False


def _weighted(rng: random.Random, pairs) -> Any:
    values, weights = zip(*pairs, strict=True)
    return rng.choices(values, weights)[0]


class Seeder:
    def __init__(
        self,
        *,
        rng: random.Random,
        project: Project,
        members: list[Membership],
        days: int,
        reverse_stars=False,
    ):
        self.rng = rng
        self.project = project
        self.members = members
        self.users = [m.user for m in members]
        self.makers = [m.user for m in members if m.role in (Role.OWNER, Role.EDITOR)]
        # A few people make most of the images.
        self.maker_weights = [1.0 / (i + 1) ** 0.8 for i in range(len(self.makers))]
        # Some people star a lot, most a little: the last member stars about 1 image in 500.
        self.star_weights = [1.0 / (i + 1) ** 1.5 for i in range(len(self.users))]
        if reverse_stars:  # another project, where the keenest starrers are other people
            self.star_weights.reverse()
        self.reviewers = self.makers
        self.days = days
        self.now = timezone.now().replace(microsecond=0)
        self.start = self.now - timedelta(days=days)
        self.files: SeedFiles | None = None
        self.counts: Counter = Counter()
        self.last_prompt: dict[int, str] = {}
        # Earlier visible images: (pk, width, height), in creation order, for edit inputs.
        self.earlier: list[tuple[int, int, int]] = []
        self.references: list[Reference] = []
        self.estimates: dict[tuple, spend.Estimate] = {}

    # -- timeline

    def job_times(self, count: int) -> list[datetime]:
        """`count` moments over the period, in working hours, fewer at weekends; sorted, all distinct."""
        rng = self.rng
        day_weights = []
        for day in range(self.days):
            weekday = (self.start + timedelta(days=day)).weekday()
            # The team grows busier towards the end of the quarter.
            day_weights.append((0.25 if weekday >= 5 else 1.0) * (0.7 + 0.6 * day / self.days))
        hours, hour_weights = zip(*HOUR_WEIGHTS, strict=True)
        cumulative_days = list(_accumulate(day_weights))
        cumulative_hours = list(_accumulate(hour_weights))
        base = self.start.replace(hour=0, minute=0, second=0)
        moments = set()
        while len(moments) < count:
            day = bisect.bisect(cumulative_days, rng.random() * cumulative_days[-1])
            hour = hours[bisect.bisect(cumulative_hours, rng.random() * cumulative_hours[-1])]
            moment = base + timedelta(days=day + 1, hours=hour, seconds=rng.random() * 3600)
            moment = moment.replace(microsecond=rng.randrange(1_000_000))
            if moment < self.now - timedelta(minutes=5):
                moments.add(moment)
        return sorted(moments)

    # -- prompts

    def prompt(self, author_id: int) -> str:
        rng = self.rng
        previous = self.last_prompt.get(author_id)
        if previous and rng.random() < 0.25:
            # People iterate: the same prompt again, or with one more instruction.
            prompt = previous if rng.random() < 0.5 else f"{previous}, {rng.choice(EXTRAS)}"
        else:
            subject = rng.choice(RARE) if rng.random() < RARE_RATE else rng.choice(PRODUCTS)
            parts = [
                f"{_capitalise(rng.choice(STYLES))} of {subject} {rng.choice(SETTINGS)}",
                rng.choice(LIGHTING),
            ]
            if rng.random() < 0.7:
                parts.append(rng.choice(PURPOSES))
            if rng.random() < 0.6:
                parts.append(rng.choice(EXTRAS))
            if rng.random() < RARE_RATE:
                parts.append(f"with {rng.choice(RARE)} in the background")
            prompt = ", ".join(parts)
        self.last_prompt[author_id] = prompt[:600]
        return prompt

    def edit_prompt(self) -> str:
        rng = self.rng
        prompt = rng.choice(EDIT_TEMPLATES).format(
            setting=rng.choice(SETTINGS),
            colour=rng.choice(COLOURS),
            prop=rng.choice(PROPS),
            lighting=rng.choice(LIGHTING),
            product=rng.choice(PRODUCTS),
            style=rng.choice(STYLES),
        )
        if rng.random() < RARE_RATE * 3:
            prompt += f", add {rng.choice(RARE)}"
        return prompt

    # -- money

    def estimate(self, *, model: str, quality: str, size: str, n: int, inputs: int) -> spend.Estimate:
        """spend.estimate, once per kind of job: the jobs' estimates and their calls' output tokens."""
        key = (model, quality, size, n, inputs)
        if key not in self.estimates:
            self.estimates[key] = spend.estimate(
                model=model, quality=quality, size=size, n=n, prompt="x" * 200, input_images=inputs
            )
        return self.estimates[key]

    # -- the rows

    def make_references(self) -> None:
        rng = self.rng
        rows = []
        for i in range(REFERENCES):
            shape = rng.choice(list(SHAPES))
            variant = rng.randrange(VARIANTS)
            original = self.files.originals[shape, variant, "png"]
            width, height = {
                "square": (1024, 1024),
                "portrait": (1024, 1536),
                "landscape": (1536, 1024),
                "tall": (1080, 1920),
                "wide": (1920, 1080),
            }[shape]
            rows.append(
                Reference(
                    project=self.project,
                    uploaded_by=rng.choice(self.makers),
                    name=f"{rng.choice(REFERENCE_NAMES)} {i + 1}",
                    file=original.name,
                    thumbnail=self.files.thumbnails[shape, variant],
                    width=width,
                    height=height,
                    format="png",
                    bytes=original.bytes,
                    uploaded_bytes=original.bytes,
                    sha256=original.sha256,
                    created_at=self.start - timedelta(days=1, minutes=i),
                )
            )
        self.references = Reference.objects.bulk_create(rows)
        self.counts["references"] += len(rows)

    def plan(self, images: int) -> list[int]:
        """Images per job (0 for failed and canceled jobs), adding up to exactly `images`."""
        rng = self.rng
        plan, total = [], 0
        while total < images:
            roll = rng.random()
            if roll < FAILED_RATE + CANCELED_RATE:
                plan.append(0)
                continue
            n = _weighted(rng, N_WEIGHTS)
            n = min(n, images - total)
            plan.append(n)
            total += n
        return plan

    def run(self, images: int, *, usage_sample: float, progress=None) -> None:
        self.files = write_seed_files(self.project)
        self.counts["files"] = len(self.files.names)
        self.make_references()
        plan = self.plan(images)
        moments = self.job_times(len(plan))
        done = 0
        batch: list[tuple[int, datetime, datetime]] = []
        batch_images = 0
        for i, (n, moment) in enumerate(zip(plan, moments, strict=True)):
            following = moments[i + 1] if i + 1 < len(moments) else self.now
            batch.append((n, moment, following))
            batch_images += n
            if batch_images >= BATCH or i == len(plan) - 1:
                self.write_batch(batch, usage_sample=usage_sample)
                done += batch_images
                batch, batch_images = [], 0
                if progress:
                    progress(done, images)

    def write_batch(self, batch: list[tuple[int, datetime, datetime]], *, usage_sample: float) -> None:
        rng = self.rng
        jobs, image_rows, inputs, calls = [], [], [], []
        # Inputs are resolved after this batch's images have ids: (job, [("image", batch index) | ...]).
        pending_inputs: list[tuple[Job, list[tuple[str, Any]]]] = []
        batch_images: list[Image] = []
        span = self.now - self.start
        for n, moment, following in batch:
            author = rng.choices(self.makers, self.maker_weights)[0]
            late = (moment - self.start) / span > 2 / 3
            model_id = _weighted(rng, [(m, late_w if late else early_w) for m, early_w, late_w in MODELS])
            model = imagemodels.MODELS[model_id]
            is_edit = bool(self.earlier or batch_images) and rng.random() < EDIT_RATE
            quality = _weighted(rng, QUALITIES)
            if model_id.startswith("gpt-image-2.5") and rng.random() < 0.15:
                quality = rng.choice(("xhigh", "max"))
            output_format = _weighted(rng, FORMATS)
            background = _weighted(rng, (("auto", 85), ("opaque", 10), ("transparent", 5)))
            if background == "transparent" and output_format == "jpeg":
                background = "opaque"

            # Inputs first: an edit's "auto" size follows its first input.
            sources: list[tuple[str, Any]] = []
            source_size = None
            if is_edit:
                # Mostly a recent image (people iterate), sometimes an old favourite.
                pool = len(self.earlier) + len(batch_images)
                back = int(rng.expovariate(1 / 40)) if rng.random() < 0.85 else rng.randrange(pool)
                position = max(0, pool - 1 - back)
                if position < len(self.earlier):
                    pk, width, height = self.earlier[position]
                    sources.append(("pk", pk))
                else:
                    target = batch_images[position - len(self.earlier)]
                    sources.append(("image", target))
                    width, height = target.width, target.height
                source_size = (width, height)
                if rng.random() < SECOND_INPUT_RATE:
                    if self.references and rng.random() < 0.6:
                        sources.append(("reference", rng.choice(self.references)))
                    elif pool > 1:
                        other = self.earlier[rng.randrange(len(self.earlier))] if self.earlier else None
                        if other and ("pk", other[0]) not in sources:
                            sources.append(("pk", other[0]))

            if is_edit and rng.random() < 0.6:
                size, size_preset = "auto", "auto"
                width, height = source_size
            elif model.custom_sizes and rng.random() < 0.12:
                size, size_preset = rng.choice(CUSTOM_SIZES), imagemodels.CUSTOM_SIZE
                width, height = imagemodels.parse_size(size)
            else:
                presets = imagemodels.presets_for(model)
                weights = {
                    "square": 40,
                    "portrait": 22,
                    "landscape": 22,
                    "story": 6,
                    "widescreen": 6,
                    "blog": 4,
                }
                preset = rng.choices(presets, [weights[p.key] for p in presets])[0]
                size, size_preset = preset.size, preset.key
                width, height = preset.dimensions
            masked = is_edit and rng.random() < MASK_RATE

            if n == 0:
                status = (
                    Job.Status.FAILED
                    if rng.random() < FAILED_RATE / (FAILED_RATE + CANCELED_RATE)
                    else "canceled"
                )
            else:
                status = Job.Status.SUCCEEDED
            latency = timedelta(seconds=min(rng.uniform(8, 75), 0.8 * (following - moment).total_seconds()))
            finished = moment + latency
            attempts = 2 if rng.random() < 0.04 else 1
            job = Job(
                project=self.project,
                author=author,
                kind=Job.Kind.EDIT if is_edit else Job.Kind.GENERATE,
                prompt=self.edit_prompt() if is_edit else self.prompt(author.pk),
                model=model_id,
                size=size,
                size_preset=size_preset,
                quality=quality,
                output_format=output_format,
                output_compression=rng.choice((80, 90, 100)) if output_format != "png" else None,
                background=background,
                moderation="low" if rng.random() < 0.05 else "auto",
                complexity=rng.choice(("", "", "low", "medium", "high")) if model.complexity else "",
                n=max(n, 1) if status != Job.Status.SUCCEEDED else n,
                input_fidelity=rng.choice(model.input_fidelity) if is_edit and model.input_fidelity else "",
                mask=self.files.mask if masked else "",
                estimated_cost=self.estimate(
                    model=model_id, quality=quality, size=size, n=max(n, 1), inputs=len(sources)
                ).cost,
                reserved_cost=0,
                status=status,
                attempts=0 if status == "canceled" else attempts,
                max_attempts=5,
                worker="" if status == "canceled" else "seed-worker:1",
                enqueued_at=moment,
                deadline_at=moment + timedelta(minutes=15),
                created_at=moment,
                started_at=None if status == "canceled" else moment + timedelta(milliseconds=400),
                finished_at=finished,
            )
            if status == Job.Status.FAILED:
                job.error_code = rng.choice(list(ERRORS))
                job.error_message = ERRORS[job.error_code]
            jobs.append(job)
            if sources:
                pending_inputs.append((job, sources))

            shape = shape_of(width, height)
            variant = rng.randrange(VARIANTS)
            for index in range(n):
                original = self.files.originals[shape, (variant + index) % VARIANTS, output_format]
                thumbnail = self.files.thumbnails[shape, (variant + index) % VARIANTS]
                created = finished  # one timestamp for a job's images, as jobs.py stores them
                image = Image(
                    job=job,
                    project=self.project,
                    index=index,
                    file=original.name,
                    thumbnail=thumbnail,
                    width=width,
                    height=height,
                    format=output_format,
                    bytes=original.bytes,
                    sha256=original.sha256,
                    created_at=created,
                    author=author,
                    model=model_id,
                    kind=job.kind,
                )
                if masked:
                    image.composite = self.files.originals[shape, (variant + index) % VARIANTS, "png"].name
                    image.composite_thumbnail = thumbnail
                roll = rng.random()
                if roll < APPROVED_RATE + REJECTED_RATE:
                    image.review_state = (
                        Image.Review.APPROVED if roll < APPROVED_RATE else Image.Review.REJECTED
                    )
                    image.reviewed_by = rng.choice(self.reviewers)
                    image.reviewed_at = min(self.now, created + timedelta(hours=rng.uniform(0.2, 72)))
                if rng.random() < DELETED_RATE:
                    image.deleted_at = min(self.now, created + timedelta(hours=rng.uniform(0.1, 48)))
                    image.deleted_by = author
                image_rows.append(image)
                batch_images.append(image)
            if status == Job.Status.SUCCEEDED and rng.random() < usage_sample:
                calls.append(self.api_call(job, width, height, len(sources), finished))

        Job.objects.bulk_create(jobs, batch_size=BATCH)
        for image in image_rows:
            image.job_id = image.job.pk
        Image.objects.bulk_create(image_rows, batch_size=BATCH)
        for job, sources in pending_inputs:
            for position, (what, value) in enumerate(sources):
                row = JobInput(job_id=job.pk, position=position)
                if what == "reference":
                    row.reference_id = value.pk
                else:
                    row.image_id = value if what == "pk" else value.pk
                inputs.append(row)
        JobInput.objects.bulk_create(inputs, batch_size=BATCH)
        self.write_social(image_rows)
        self.write_calls(calls)
        self.earlier.extend(
            (image.pk, image.width, image.height) for image in image_rows if not image.deleted_at
        )
        self.counts["jobs"] += len(jobs)
        self.counts.update(f"jobs {job.status}" for job in jobs)
        self.counts["images"] += len(image_rows)
        self.counts.update(f"images {image.kind}" for image in image_rows)
        self.counts.update(f"images {image.review_state}" for image in image_rows)
        self.counts["images deleted"] += sum(1 for image in image_rows if image.deleted_at)
        self.counts["images with a pasted-back composite"] += sum(
            1 for image in image_rows if image.composite
        )
        self.counts["job inputs"] += len(inputs)

    def write_social(self, image_rows: list[Image]) -> None:
        rng = self.rng
        favourites, comments = [], []
        for image in image_rows:
            if image.deleted_at:
                continue
            rate = FAVOURITE_RATE * (4 if image.review_state == Image.Review.APPROVED else 1)
            if rng.random() < rate:
                wanted = min(len(self.users), rng.choice((1, 1, 1, 2, 3)))
                fans = {id(user): user for user in rng.choices(self.users, self.star_weights, k=wanted)}
                for user in fans.values():
                    star = Favourite.of(user=user, image=image)
                    star.created_at = image.created_at + timedelta(hours=1)
                    favourites.append(star)
            if rng.random() < COMMENT_RATE:
                moment = image.created_at
                for _ in range(rng.choice((1, 1, 2, 3))):
                    moment = min(self.now, moment + timedelta(minutes=rng.uniform(5, 600)))
                    comments.append(
                        Comment(
                            image_id=image.pk,
                            author=rng.choice(self.users),
                            body=rng.choice(COMMENTS),
                            created_at=moment,
                        )
                    )
        Favourite.objects.bulk_create(favourites, batch_size=BATCH)
        Comment.objects.bulk_create(comments, batch_size=BATCH)
        self.counts["favourites"] += len(favourites)
        self.counts["comments"] += len(comments)

    def api_call(self, job: Job, width: int, height: int, inputs: int, finished: datetime) -> ApiCall:
        rng = self.rng
        # The usage such a call reports: output tokens as spend estimates them for this size and quality.
        size = f"{width}x{height}"
        estimate = self.estimate(model=job.model, quality=job.quality, size=size, n=job.n, inputs=inputs)
        output = estimate.output_tokens
        text = max(1, len(job.prompt) // 4)
        image_in = inputs * spend.INPUT_IMAGE_TOKENS
        usage = {
            "input_tokens": text + image_in,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
            "output_tokens": output,
            "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
            "total_tokens": text + image_in + output,
        }
        return ApiCall(
            job=job,
            attempt=job.attempts,
            endpoint="images.edit" if job.is_edit else "images.generate",
            outcome=ApiCall.Outcome.OK,
            request_id=f"req_seed{rng.getrandbits(64):016x}",
            http_status=200,
            latency_ms=int((finished - job.created_at).total_seconds() * 1000),
            usage=usage,
            input_text_tokens=text,
            input_image_tokens=image_in,
            output_image_tokens=output,
            output_text_tokens=0,
            total_tokens=usage["total_tokens"],
            response_size=f"{width}x{height}",
            response_quality=job.quality if job.quality != "auto" else "high",
            response_background="opaque" if job.background == "auto" else job.background,
            response_format=job.output_format,
            created_at=finished,
        )

    def write_calls(self, calls: list[ApiCall]) -> None:
        if not calls:
            return
        for call in calls:
            call.job_id = call.job.pk
        ApiCall.objects.bulk_create(calls, batch_size=BATCH)
        for call in calls:  # priced as the worker prices them, by the same function
            spend.charge(api_call=call, job=call.job)
        self.counts["api calls"] += len(calls)
        self.counts["ledger entries"] += len(calls)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _accumulate(values):
    total = 0.0
    for value in values:
        total += value
        yield total


def ensure_users(count: int, *, password: str | None) -> list[Any]:
    """demo-ana, demo-ben, ...: created once, reused by later seeds (their passwords are left alone)."""
    user_model = get_user_model()
    names = [
        f"demo-{USER_NAMES[i % len(USER_NAMES)]}{'' if i < len(USER_NAMES) else i // len(USER_NAMES) + 1}"
        for i in range(count)
    ]
    existing = {user.username: user for user in user_model.objects.filter(username__in=names)}
    hashed = make_password(password) if password else make_password(None)  # None: an unusable password
    created = []
    for name in names:
        if name not in existing:
            created.append(
                user_model(
                    username=name,
                    email=f"{name}@example.com",
                    first_name=name.removeprefix("demo-").capitalize(),
                    password=hashed,
                )
            )
    user_model.objects.bulk_create(created)
    if password:
        user_model.objects.filter(username__in=names).update(password=hashed)
    by_name = {user.username: user for user in user_model.objects.filter(username__in=names)}
    return [by_name[name] for name in names]


def analyze() -> None:
    """Fresh statistics so plans are the ones a live database would choose; VACUUM too when we can."""
    if connection.vendor != "postgresql":
        return
    tables = [m._meta.db_table for m in (Image, Job, JobInput, Favourite, Comment, ApiCall, LedgerEntry)]
    with connection.cursor() as cursor:
        # VACUUM cannot run in a transaction (tests run in one); it also sets the visibility map and hint
        # bits, as autovacuum would have done on a live database, so the first reads do not pay for them.
        verb = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
        cursor.execute(f"{verb} {', '.join(connection.ops.quote_name(t) for t in tables)}")


def seed(
    *,
    name: str = DEFAULT_PROJECT,
    images: int = 100_000,
    users: int = 8,
    seed_value: int = 1,
    days: int = 90,
    replace: bool = False,
    password: str | None = None,
    usage_sample: float = 0.05,
    progress=None,
    reverse_stars: bool = False,
) -> SeedResult:
    if images < 1 or users < 1 or days < 1:
        raise CommandError("--images, --users and --days must be at least 1.")
    started = time.monotonic()
    existing = list(Project.objects.filter(name=name))
    if existing and not replace:
        raise CommandError(
            f'A project named "{name}" already exists (id {", ".join(str(p.pk) for p in existing)}). '
            "Pass --replace to delete it and seed again, or choose another --project name."
        )
    replaced = bool(existing)
    for old in existing:
        delete_project(old)
    rng = random.Random(seed_value)
    people = ensure_users(users, password=password)
    seeder = None
    files: list[str] = []
    try:
        with transaction.atomic():
            owner = people[0]
            project = Project.objects.create(
                name=name, created_by=owner, created_at=timezone.now() - timedelta(days=days + 1)
            )
            editors = max(1, round(0.6 * (len(people) - 1))) if len(people) > 1 else 0
            members = Membership.objects.bulk_create(
                [
                    Membership(
                        project=project,
                        user=user,
                        role=Role.OWNER if i == 0 else (Role.EDITOR if i <= editors else Role.VIEWER),
                        created_at=project.created_at,
                    )
                    for i, user in enumerate(people)
                ]
            )
            for member, user in zip(members, people, strict=True):
                member.user = user
            seeder = Seeder(rng=rng, project=project, members=members, days=days, reverse_stars=reverse_stars)
            try:
                seeder.run(images, usage_sample=usage_sample, progress=progress)
            finally:
                files = seeder.files.names if seeder.files else []
    except BaseException:
        for stored in files:
            default_storage.delete(stored)
        raise
    analyze()
    counts = {"users": len(people), "members": len(members), **dict(sorted(seeder.counts.items()))}
    return SeedResult(
        project=project,
        users=people,
        owner=people[0],
        counts=counts,
        seconds=time.monotonic() - started,
        replaced=replaced,
    )


class Command(BaseCommand):
    help = (
        "Fill a project with realistic demo rows: members, jobs over ~90 days, images (about 20 % edits "
        "with inputs, so lineage exists), reviews, favourites, comments and searchable prompts. Files are "
        "a shared set of 50 tiny pictures written once under projects/<id>/seed/ through Django's storage; "
        "every image points at one of them (one file per image would take minutes and gigabytes)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=100_000, help="images to make (default 100000)")
        parser.add_argument(
            "--project", default=DEFAULT_PROJECT, help=f'project name (default "{DEFAULT_PROJECT}")'
        )
        parser.add_argument("--users", type=int, default=8, help="members: an owner, editors, viewers (8)")
        parser.add_argument("--seed", type=int, default=1, help="random seed: same seed, same data (1)")
        parser.add_argument("--days", type=int, default=90, help="how far back the images go (90)")
        parser.add_argument(
            "--replace", action="store_true", help="delete a project of that name (and all in it) first"
        )
        parser.add_argument(
            "--password",
            default=None,
            help="set this password on the demo users (default: new users get an unusable password)",
        )
        parser.add_argument(
            "--usage-sample",
            type=float,
            default=0.05,
            help="share of finished jobs that get an API call with usage and its ledger charge (0.05)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]

        def progress(done: int, total: int) -> None:
            if verbosity >= 2:
                self.stdout.write(f"  {done:,} / {total:,} images")

        result = seed(
            name=options["project"],
            images=options["images"],
            users=options["users"],
            seed_value=options["seed"],
            days=options["days"],
            replace=options["replace"],
            password=options["password"],
            usage_sample=options["usage_sample"],
            progress=progress,
        )
        project = result.project
        verb = "Replaced" if result.replaced else "Seeded"
        self.stdout.write(
            self.style.SUCCESS(
                f'{verb} project "{project.name}" (id {project.pk}) in {result.seconds:.1f} s.'
            )
        )
        for key, value in result.counts.items():
            self.stdout.write(f"  {key:<38} {value:>9,}")
        self.stdout.write(f"  gallery: /p/{project.pk}/gallery   owner: {result.owner.username}")
        if not options["password"]:
            self.stdout.write("  The demo users have no usable password unless you pass --password.")
