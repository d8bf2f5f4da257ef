from django.conf import settings
from django.utils.functional import SimpleLazyObject

from workspace import spend


def workspace(request) -> dict:
    context = {
        "demo_mode": settings.DEMO_MODE,
        # Limits pages state, read from the settings that enforce them (forms state their own).
        "limits": {"upload_bytes": settings.REFERENCE_MAX_BYTES, "edit_inputs": settings.MAX_EDIT_INPUTS},
    }
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # Lazy: only pages that show the badge pay for its two queries (the 1 s job poll does not).
        context["my_spend"] = SimpleLazyObject(lambda: spend.summary_for(user))
    return context
