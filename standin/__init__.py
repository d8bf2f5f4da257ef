"""A stand-in for the OpenAI Images API (``/v1/images/generations`` and ``/v1/images/edits``).

It validates requests the way the real service documents them, answers with real images made by
Pillow, streams SSE events in the shape the ``openai`` SDK parses, and can be told to fail on purpose
(rate limits, outages, dropped connections, moderation...) so the app's error handling can be tested
without spending money. Standard library + Pillow only, so it runs without Django settings::

    python -m standin --port 8765 --latency 0.5

Development tooling: tests, demo mode (``make run``) and the benchmarks use it; the production image
does not ship it. By concern:

- ``capabilities``: what each model accepts, the service's limits and parameters;
- ``errors``, ``faults``: the error shape, and failures on purpose;
- ``requests``: multipart and JSON parsing, and what each request recorded;
- ``validation``: ``resolve_job`` and its checks, into an ``ImageJob``;
- ``responses``: usage, images, the JSON and SSE payloads;
- ``batches``: the Files and Batch APIs (upload, content, batches create/retrieve/list/cancel), with
  knobs for the time a batch takes and its expiry;
- ``server``: the HTTP handler and ``StandinServer``.
"""

from standin.errors import ApiError
from standin.requests import RecordedRequest
from standin.responses import encode_image, render_image, usage_for
from standin.server import StandinServer, main
from standin.validation import ImageJob, input_image_tokens, resolve_job

__all__ = [
    "ApiError",
    "ImageJob",
    "RecordedRequest",
    "StandinServer",
    "encode_image",
    "input_image_tokens",
    "main",
    "render_image",
    "resolve_job",
    "usage_for",
]
