"""The README's worked example in Python: submit a job, poll it, download the image (standard library only).

TOKEN=atl_… ATELIER_URL=http://127.0.0.1:8000 python devtools/api_example.py
"""

import json
import os
import time
import urllib.request
import uuid

BASE = os.environ.get("ATELIER_URL", "http://127.0.0.1:8611") + "/api/v1"
HEADERS = {"Authorization": f"Bearer {os.environ['TOKEN']}"}


def call(method: str, path: str, body: dict | None = None, **headers) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=HEADERS | headers)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.load(response)


project = call("GET", "/projects")[0]
job = call(
    "POST",
    f"/projects/{project['id']}/jobs",
    {"prompt": "A pear on a green tiled table, evening light", "quality": "low", "size": "square"},
    **{"Idempotency-Key": str(uuid.uuid4())},
)
print("queued job", job["id"], "estimated $", job["estimated_cost"])
while job["status"] not in ("succeeded", "failed", "canceled"):
    time.sleep(1)
    job = call("GET", job["links"]["self"].removeprefix("/api/v1"))
    print("status:", job["status"])
for image in job["images"]:
    request = urllib.request.Request(
        BASE.removesuffix("/api/v1") + image["links"]["download"], headers=HEADERS
    )
    with urllib.request.urlopen(request) as response:
        name = f"image-{image['id']}.png"
        with open(name, "wb") as out:
            out.write(response.read())
    print("saved", name, image["width"], "x", image["height"])
