from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.template.defaultfilters import truncatechars
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from workspace import imagemodels

register = template.Library()


@register.filter
def times(count: int) -> range:
    return range(int(count or 0))


@register.filter
def model_label(model_id: str) -> str:
    model = imagemodels.get_model(model_id)
    return model.label if model else model_id


@register.filter
def seconds_until(moment) -> str:
    """'in 12 s' / 'in 2 min' / 'now': finer than Django's timeuntil, which counts whole minutes."""
    if moment is None:
        return ""
    seconds = int((moment - timezone.now()).total_seconds())
    if seconds <= 0:
        return "now"
    if seconds < 90:
        return f"in {seconds} s"
    return f"in {round(seconds / 60)} min"


@register.filter
def ago(moment) -> str:
    """'just now' for the first minute, then Django's '3 minutes ago'."""
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment).split(',')[0]} ago"


@register.filter
def dollars(amount) -> str:
    """$0.211 for cents and less (image calls are cheap one by one), $12.40 from a dollar up."""
    if amount is None or amount == "":
        return "0.00"
    value = Decimal(amount)
    places = Decimal("0.001") if abs(value) < 1 and value != 0 else Decimal("0.01")
    return f"{value.quantize(places, rounding=ROUND_HALF_UP):,}"


@register.filter
def dimensions(size: str) -> str:
    return size.replace("x", " × ")


@register.filter
def filesize(num_bytes: int) -> str:
    value = float(num_bytes)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


@register.filter
def pairs(spec: str) -> list[tuple[str, str]]:
    """'png:PNG,jpeg:JPEG' -> [('png', 'PNG'), ('jpeg', 'JPEG')], for small fixed menus in templates."""
    return [tuple(item.split(":", 1)) for item in spec.split(",")]


@register.filter
def get(mapping: dict, key: str):
    return mapping.get(key, "")


_TILE_ID = 987654321987  # replaced in reversed URLs, so each kind of URL is reversed once a page
_STAR = (
    '<span class="badge star" title="Your favourite">★<span class="visually-hidden"> favourite</span></span>'
)


def _alt(prompt: str) -> str:
    if not prompt.isascii():
        return truncatechars(prompt, 90)
    return prompt if len(prompt) <= 90 else prompt[:89] + "…"


@register.simple_tag
def gallery_tiles(items, project_id: int, filters: str) -> SafeString:
    """The gallery's 48 tiles, built in Python: per-tile {% url %} tags cost ~5 ms a page at 100k images."""
    marker = str(_TILE_ID)
    detail = reverse("image_detail", args=[project_id, _TILE_ID])
    thumb = reverse("image_thumb", args=[project_id, _TILE_ID])
    pasted = reverse("image_composite", args=[project_id, _TILE_ID, "thumb"])
    back = "?from=gallery" + (f"&amp;{escape(filters)}" if filters else "")
    parts = []
    for image in items:
        pk = str(image.pk)
        state = escape(image.review_state)
        source = (pasted if image.composite_thumbnail else thumb).replace(marker, pk)
        review = (
            f'<span class="badge review {state}">{escape(image.get_review_state_display())}</span>'
            if image.review_state != "draft"
            else ""
        )
        parts.append(
            f'<li class="tile review-{state}">'
            f'<input type="checkbox" name="ids" value="{pk}" id="select-{pk}" class="tile-check" '
            f'aria-label="Select image {pk}">'
            f'<a href="{detail.replace(marker, pk)}{back}" class="tile-link">'
            f'<img src="{source}" alt="{escape(_alt(image.alt_source or ""))}" width="{image.width}" '
            f'height="{image.height}" loading="lazy"></a>'
            f'<span class="tile-badges">{_STAR if image.is_favourite else ""}{review}</span></li>\n'
        )
    return mark_safe("".join(parts))  # noqa: S308 - every value above is escaped or ours


_FILTER_BARS: dict[tuple, SafeString] = {}


@register.simple_tag
def gallery_filter_fields(form) -> SafeString:
    """The filter bar's fields, rendered once per (choices, values, errors) and reused: nine widgets
    through the form renderer cost ~2 ms a page. The key holds everything the HTML depends on."""
    key = (
        tuple(tuple(field.choices) for field in form.fields.values() if hasattr(field, "choices")),
        tuple((name, tuple(form.data.getlist(name))) for name in form.fields) if form.is_bound else (),
        form.errors.as_json() if form.is_bound and form.errors else "",
    )
    if key not in _FILTER_BARS:
        if len(_FILTER_BARS) > 500:
            _FILTER_BARS.clear()
        _FILTER_BARS[key] = render_to_string("workspace/_gallery_filters.html", {"form": form})
    return _FILTER_BARS[key]
