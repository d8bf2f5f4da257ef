"""The project gallery: filters from the URL, keyset pages, neighbours for the image page.

One query a page whatever the filters: the filters are WHERE clauses on `Image` (author, model and kind
are copied onto it, and on Postgres so is the prompt, as a tsvector for the search). "My favourites"
joins the person's stars and pages in their order, which their copy of the image's date makes the same.
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django import forms
from django.contrib.postgres.search import SearchQuery, SearchVectorExact, SearchVectorField
from django.db import connection
from django.db.models import Expression, F, Field, FilteredRelation, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.expressions import Col
from django.db.models.functions import Coalesce, Left
from django.utils import timezone

from workspace import imagemodels
from workspace.models import Favourite, Image, Job, Project

PAGE_SIZE = 48
MAX_SEARCH = 300


class GalleryFilterForm(forms.Form):
    label_suffix = ""

    q = forms.CharField(label="Search prompts", required=False)
    author = forms.TypedChoiceField(label="Author", required=False, coerce=int, empty_value=None)
    model = forms.ChoiceField(
        label="Model",
        required=False,
        # Retired models too: their images are still in the gallery. A callable: the rows are read per form.
        choices=lambda: [("", "Any model"), *[(m.id, m.label) for m in imagemodels.all_models().values()]],
    )
    review = forms.ChoiceField(
        label="Review", required=False, choices=[("", "Any review"), *Image.Review.choices]
    )
    favourites = forms.BooleanField(label="My favourites", required=False)
    kind = forms.ChoiceField(
        label="Made by",
        required=False,
        choices=[("", "Any kind"), ("generate", "Generations"), ("edit", "Edits")],
    )
    aspect = forms.ChoiceField(
        label="Shape",
        required=False,
        choices=[
            ("", "Any shape"),
            ("square", "Square"),
            ("portrait", "Portrait"),
            ("landscape", "Landscape"),
        ],
    )
    template = forms.TypedChoiceField(label="Template", required=False, coerce=int, empty_value=None)
    campaign = forms.TypedChoiceField(label="Campaign", required=False, coerce=int, empty_value=None)
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(
        self,
        *args,
        authors: list[tuple[int, str]],
        templates: list[tuple[int, str]] | None = None,
        campaigns: list[tuple[int, str]] | None = None,
        **kwargs,
    ) -> None:
        """`templates` and `campaigns`: the project's, as (id, name); None accepts any id given (for
        pages that only follow the gallery's filters: the query is within the project either way)."""
        super().__init__(*args, **kwargs)
        self.fields["author"].choices = [("", "Anyone"), *authors]
        for name, choices, anything in (
            ("template", templates, "Any template"),
            ("campaign", campaigns, "Any campaign"),
        ):
            if choices is None:
                given = self.data.get(name) if self.is_bound else None
                choices = [(given, given)] if given else []
            self.fields[name].choices = [("", anything), *choices]

    def clean_q(self) -> str:
        query = " ".join(self.cleaned_data["q"].split())
        if len(query) > MAX_SEARCH:
            raise forms.ValidationError(f"Search is limited to {MAX_SEARCH} characters; shorten it.")
        return query

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", "The end date is before the start date.")
        return data


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def filtered(*, project: Project, user, data: dict) -> QuerySet:
    """The project's visible images under the filters, with `sort_at` and `sort_id`: the view's order."""
    images = Image.objects.visible().filter(project=project)
    if data.get("favourites"):
        # Walk the person's stars newest first on favourite_user_recent and look each image up, so a
        # page costs about 49 lookups whether they have 50 stars or 5,000. The sort keys are the
        # star's copies of the image's created_at and id: the same values, in the star's index order.
        star = FilteredRelation("favourites", condition=Q(favourites__user=user, favourites__project=project))
        images = images.alias(star=star, sort_at=F("star__image_created_at"), sort_id=F("star__image_id"))
        images = images.filter(sort_id__isnull=False).annotate(is_favourite=Value(True))
    else:
        images = images.alias(sort_at=F("created_at"), sort_id=F("id"))
        # A scalar subquery runs once per image shown; EXISTS became a hashed subplan reading all of
        # the person's stars on every page (0.68 -> 0.14 ms at 100,000 images).
        mine = Favourite.objects.filter(user=user, image=OuterRef("pk")).annotate(yes=Value(True))
        images = images.annotate(is_favourite=Coalesce(Subquery(mine.values("yes")[:1]), Value(False)))
    if data.get("author"):
        images = images.filter(author_id=data["author"])
    if data.get("model"):
        images = images.filter(model=data["model"])
    if data.get("review"):
        images = images.filter(review_state=data["review"])
    if data.get("kind"):
        images = images.filter(kind=data["kind"])
    # Through the job (one join on its primary key): any version of the template, the whole campaign.
    if data.get("template"):
        images = images.filter(job__template_version__template_id=data["template"])
    if data.get("campaign"):
        images = images.filter(job__campaign_id=data["campaign"])
    if data.get("since"):
        images = images.filter(sort_at__gte=_day_start(data["since"]))
    if data.get("until"):
        images = images.filter(sort_at__lt=_day_start(data["until"] + timedelta(days=1)))
    aspect = data.get("aspect")
    if aspect == "square":
        images = images.filter(width=F("height"))
    elif aspect == "portrait":
        images = images.filter(height__gt=F("width"))
    elif aspect == "landscape":
        images = images.filter(width__gt=F("height"))
    if data.get("q"):
        images = _matching(images, project=project, query=data["q"])
    return images


class _ImageColumn(Expression):
    """A column that workspace_image has on Postgres but the Image model does not declare.

    It resolves to the query's own alias for the table, so it follows the queryset into a subquery.
    """

    def __init__(self, name: str, output_field: Field) -> None:
        super().__init__(output_field=output_field)
        self.name = name

    def resolve_expression(self, query=None, *args, **kwargs) -> Col:
        target = self.output_field.clone()
        target.set_attributes_from_name(self.name)
        target.model = Image
        return Col(query.get_initial_alias(), target)


def _matching(images: QuerySet, *, project: Project, query: str) -> QuerySet:
    if connection.vendor == "postgresql":
        # The prompt's tsvector kept on each image (migration 0007), read as part of the image row.
        search = _ImageColumn("search", SearchVectorField())  # one of models.UNDECLARED_COLUMNS
        words = SearchQuery(query, config="english", search_type="websearch")
        return images.filter(SearchVectorExact(search, words))
    condition = Q()
    for word in query.split():
        condition &= Q(prompt__icontains=word)
    return images.filter(job_id__in=Job.objects.filter(project=project).filter(condition).values("pk"))


class BadCursor(ValueError):
    pass


def encode_cursor(image: Image) -> str:
    raw = f"{image.created_at.isoformat()}|{image.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, pk = raw.partition("|")
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed, int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise BadCursor(cursor[:40]) from error


def older_than(images: QuerySet, moment: datetime, pk: int) -> QuerySet:
    # The redundant sort_at <= moment lets the planner range-scan the (created_at, id) index; the OR
    # alone hides the bound from it.
    return images.filter(sort_at__lte=moment).filter(
        Q(sort_at__lt=moment) | Q(sort_at=moment, sort_id__lt=pk)
    )


def newer_than(images: QuerySet, moment: datetime, pk: int) -> QuerySet:
    return images.filter(sort_at__gte=moment).filter(
        Q(sort_at__gt=moment) | Q(sort_at=moment, sort_id__gt=pk)
    )


@dataclass
class Page:
    items: list[Image]
    next_cursor: str


def page(images: QuerySet, *, cursor: str = "", size: int = PAGE_SIZE) -> Page:
    if cursor:
        moment, pk = decode_cursor(cursor)
        images = older_than(images, moment, pk)
    # The alt text needs the prompt's start only: a correlated subquery runs for the 49 rows the LIMIT
    # keeps, where a join would fetch a whole Job (prompts run to 32,000 characters) per candidate.
    prompt = (
        Job.objects.filter(pk=OuterRef("job_id")).order_by().annotate(head=Left("prompt", 91)).values("head")
    )
    shown = (
        "id",
        "project_id",
        "job_id",
        "width",
        "height",
        "created_at",
        "review_state",
        "composite_thumbnail",
    )
    rows = list(
        images.only(*shown).annotate(alt_source=Subquery(prompt)).order_by("-sort_at", "-sort_id")[: size + 1]
    )
    more = len(rows) > size
    items = rows[:size]
    return Page(items=items, next_cursor=encode_cursor(items[-1]) if more else "")


def neighbours(images: QuerySet, image: Image) -> tuple[Image | None, Image | None]:
    """The image shown before (newer) and after (older) this one in the same filtered view."""
    newer = newer_than(images, image.created_at, image.pk).order_by("sort_at", "sort_id").only("id").first()
    older = older_than(images, image.created_at, image.pk).order_by("-sort_at", "-sort_id").only("id").first()
    return newer, older
