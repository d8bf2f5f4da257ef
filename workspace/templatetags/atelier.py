from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils import timezone
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
