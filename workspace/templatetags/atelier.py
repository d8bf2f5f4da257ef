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
