"""Failures on purpose: which faults exist, how a prompt names one, and the error each one answers.

Faults are consumed by image requests in order (``StandinServer.inject``, ``POST /_standin/faults``) or
triggered by a ``[standin:FAULT]`` marker inside a prompt. A fault decides the answer whatever the request
contains.
"""

import re

from standin.errors import ApiError

FAULT_PATTERN = re.compile(
    r"^(ok|429(:\d+(\.\d+)?)?|quota|500|503|slow(:\d+(\.\d+)?)?|drop|garbage|moderation|401|403|nogif|nosvg)$"
)
PROMPT_FAULT_PATTERN = re.compile(r"\[standin:([a-z0-9:.]+)\]")
# Faults imitating a failure after the model started working pay the configured latency first.
LATE_FAULTS = frozenset({"500", "503", "drop", "garbage", "moderation"})
# fault -> (status, type, code, message); {model} and {request_id} are filled in.
FAULT_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "429": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-standin on images per minute (IPM): Limit 5, "
        "Used 5, Requested 1. Visit https://platform.openai.com/account/rate-limits to learn more.",
    ),
    "quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
    ),
    "500": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "503": (503, "server_error", None, "The engine is currently overloaded, please try again later."),
    "moderation": (
        400,
        "image_generation_user_error",
        "moderation_blocked",
        "Your request was rejected by the safety system. If you believe this is an error, contact us at "
        "help.openai.com and include the request ID {request_id}. safety_violations=[sexual].",
    ),
    "401": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    "403": (
        403,
        "invalid_request_error",
        None,
        "Your organization must be verified to use the model `{model}`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify Organization. "
        "If you just verified, it can take up to 15 minutes for access to propagate.",
    ),
}


# The organisation lacks a preview (reference §13: "a 403 or 400 naming the feature").
FAULT_ERRORS["nogif"] = (
    403,
    "invalid_request_error",
    "feature_access_denied",
    "Your organization does not have access to the GIF output preview for the model `{model}`.",
)
FAULT_ERRORS["nosvg"] = (
    400,
    "invalid_request_error",
    "feature_access_denied",
    "SVG output requires access to the SVG preview; your organization does not have access to it yet.",
)


def fault_error(fault: str, model: str, request_id: str) -> ApiError:
    name, _, argument = fault.partition(":")
    status, error_type, code, message = FAULT_ERRORS[name]
    headers = {"retry-after": argument or "1"} if name == "429" else None
    message = message.format(model=model, request_id=request_id)
    return ApiError(message, None, code, status=status, type=error_type, headers=headers)
