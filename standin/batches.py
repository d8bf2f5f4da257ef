"""The Files and Batch APIs, as far as the overnight lane uses them: upload, content, delete, create,
retrieve, list and cancel, kept in memory.

A batch is worked through when it is first asked about ``batch_seconds`` after it was created (until
then it is ``in_progress``). Each line is checked exactly as the synchronous endpoint checks a request
(``resolve_job``); a line that fails, or carries a fault (a ``[standin:moderation]`` marker in its
prompt, or one queued with ``inject``), goes to the error file with that error. With
``batch_expire_after`` set to N, a batch expires having made only its first N lines; the rest go to the
error file as ``batch_expired``. A deleted file is gone, content and all, as at OpenAI; with
``delete_failures`` set to N, the next N deletes answer 500 instead. Output lines follow OpenAI's batch
output shape::

    {"id": "batch_req_…", "custom_id": "…", "response": {"status_code": 200, "request_id": "req_…",
     "body": {…the ImagesResponse, with its own usage…}}, "error": null}
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from standin.errors import ApiError
from standin.faults import fault_error
from standin.requests import json_edit_files
from standin.responses import image_body
from standin.validation import resolve_job

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_ENDPOINTS = {"/v1/images/generations": "generations", "/v1/images/edits": "edits"}
# Endpoints OpenAI's Batch API takes that the stand-in does not make.
OTHER_BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/videos",
)
MAX_LINES = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
OPEN_STATUSES = ("validating", "in_progress", "finalizing", "cancelling")


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class Batch:
    id: str
    endpoint: str
    input_file_id: str
    metadata: dict[str, Any] | None
    ready_at: float
    expire_after: int | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "in_progress"
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    times: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.created_at,
            "expires_at": self.created_at + 24 * 3600,
            "finalizing_at": self.times.get("finalizing_at"),
            "completed_at": self.times.get("completed_at"),
            "failed_at": self.times.get("failed_at"),
            "expired_at": self.times.get("expired_at"),
            "cancelling_at": self.times.get("cancelling_at"),
            "cancelled_at": self.times.get("cancelled_at"),
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }


class BatchService:
    """The stand-in's files and batches. ``batch_seconds``, ``batch_expire_after`` and ``delete_failures``
    are the knobs."""

    def __init__(self, next_fault) -> None:
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self.batch_seconds = 0.0
        self.batch_expire_after: int | None = None
        self.delete_failures = 0  # the next this many file deletes answer 500 (a fault to retry after)
        self._next_fault = next_fault  # the server's: queued faults first, then a prompt's marker
        self._lock = threading.RLock()

    def reset(self) -> None:
        with self._lock:
            self.files.clear()
            self.batches.clear()
            self.batch_seconds, self.batch_expire_after = 0.0, None
            self.delete_failures = 0

    # -- files

    def file_create(self, fields: dict[str, Any], parts: list[tuple[str, str, str, bytes]]) -> dict[str, Any]:
        purpose = fields.get("purpose")
        if purpose is None:
            raise ApiError("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
        if purpose not in FILE_PURPOSES:
            values = ", ".join(f"'{value}'" for value in FILE_PURPOSES)
            raise ApiError(f"Invalid value: '{purpose}'. Supported values are: {values}.", "purpose")
        uploads = [part for part in parts if part[0] == "file"]
        if len(uploads) != 1:
            raise ApiError("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        _, filename, _, data = uploads[0]
        if purpose == "batch" and len(data) > MAX_INPUT_BYTES:
            raise ApiError("Batch input files may be up to 200 MB.", "file", "file_too_large")
        stored = StoredFile(id="file-" + secrets.token_hex(12), filename=filename, purpose=purpose, data=data)
        with self._lock:
            self.files[stored.id] = stored
        return stored.as_json()

    def file_bytes(self, file_id: str) -> bytes | None:
        with self._lock:
            stored = self.files.get(file_id)
        return stored.data if stored is not None else None

    def file_get(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            raise ApiError(f"No such File object: {file_id}", "id", status=404)
        return stored

    def file_delete(self, file_id: str) -> dict[str, Any]:
        """OpenAI's FileDeleted; its bytes are gone (a 404 after, as for any unknown id)."""
        with self._lock:
            if self.delete_failures > 0:
                self.delete_failures -= 1
                message = "The server had an error while processing your request."
                raise ApiError(message, type="server_error", status=500)
            if self.files.pop(file_id, None) is None:
                raise ApiError(f"No such File object: {file_id}", "id", status=404)
        return {"id": file_id, "object": "file", "deleted": True}

    # -- batches

    def batch_create(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ApiError("We could not parse the JSON body of your request. Send valid JSON.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not payload.get(name):
                raise ApiError(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        if payload["completion_window"] != "24h":
            message = f"Invalid value: '{payload['completion_window']}'. Supported values are: '24h'."
            raise ApiError(message, "completion_window", "invalid_value")
        endpoint = payload["endpoint"]
        if endpoint not in BATCH_ENDPOINTS:
            known = endpoint in OTHER_BATCH_ENDPOINTS
            message = (
                f"The stand-in does not run batches for {endpoint}."
                if known
                else f"Invalid value: '{endpoint}'. Supported values are the Batch API's endpoints."
            )
            raise ApiError(message, "endpoint", "invalid_value")
        stored = self.file_get(payload["input_file_id"])
        if stored.purpose != "batch":
            message = f"File {stored.id} has purpose '{stored.purpose}'; a batch input file needs 'batch'."
            raise ApiError(message, "input_file_id", "invalid_value")
        metadata = payload.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16):
            raise ApiError("Invalid 'metadata': up to 16 string pairs.", "metadata", "invalid_value")
        batch = Batch(
            id="batch_" + secrets.token_hex(12),
            endpoint=endpoint,
            input_file_id=stored.id,
            metadata=metadata,
            ready_at=time.monotonic() + self.batch_seconds,
            expire_after=self.batch_expire_after,
        )
        lines = [line for line in stored.data.splitlines() if line.strip()]
        batch.counts["total"] = len(lines)
        problems = self._check_input(lines, endpoint)
        if problems:
            batch.status, batch.errors = "failed", problems
            batch.times["failed_at"] = int(time.time())
        with self._lock:
            self.batches[batch.id] = batch
        return batch.as_json()

    @staticmethod
    def _check_input(lines: list[bytes], endpoint: str) -> list[dict[str, Any]]:
        """What makes OpenAI fail a whole batch while validating its file: the file's shape, not a body."""
        if not lines:
            return [
                {"code": "empty_file", "message": "The input file is empty.", "line": None, "param": None}
            ]
        if len(lines) > MAX_LINES:
            message = f"The input file has {len(lines)} requests; the limit is {MAX_LINES}."
            return [{"code": "too_many_requests", "message": message, "line": None, "param": None}]
        problems, seen = [], set()
        for number, raw in enumerate(lines, start=1):
            try:
                line = json.loads(raw)
            except ValueError:
                line = None
            if not isinstance(line, dict):
                problems.append({"code": "invalid_json_line", "message": "This line is not valid JSON."})
            elif not isinstance(line.get("custom_id"), str) or not line["custom_id"]:
                problems.append({"code": "missing_custom_id", "message": "Each request needs a custom_id."})
            elif line["custom_id"] in seen:
                problems.append(
                    {
                        "code": "duplicate_custom_id",
                        "message": f"The custom_id {line['custom_id']} is repeated.",
                    }
                )
            elif line.get("method") != "POST":
                problems.append({"code": "invalid_method", "message": "Each request's method must be POST."})
            elif line.get("url") != endpoint:
                message = f"The url {line.get('url')!r} does not match the batch's endpoint {endpoint}."
                problems.append({"code": "mismatched_endpoint", "message": message})
            elif not isinstance(line.get("body"), dict):
                problems.append({"code": "invalid_body", "message": "Each request needs a JSON body."})
            else:
                seen.add(line["custom_id"])
                continue
            problems[-1] |= {"line": number, "param": None}
        return problems[:100]

    def batch_get(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise ApiError(f"No batch found with id '{batch_id}'.", "batch_id", status=404)
            self._advance(batch)
            return batch.as_json()

    def batch_list(self, limit: int, after: str = "") -> dict[str, Any]:
        """Newest first, a page of `limit` (1..100) after the batch id `after`, as OpenAI pages it."""
        with self._lock:
            newest = list(reversed(self.batches.values()))  # made in this order; seconds can tie
            ids = [batch.id for batch in newest]
            start = ids.index(after) + 1 if after in ids else 0
            page = newest[start : start + max(1, min(limit, 100))]
            data = [batch.as_json() for batch in page]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + len(data) < len(newest),
        }

    def batch_cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise ApiError(f"No batch found with id '{batch_id}'.", "batch_id", status=404)
            self._advance(batch)
            if batch.status not in ("validating", "in_progress", "finalizing"):
                message = f"Cannot cancel a batch with status '{batch.status}'."
                raise ApiError(message, None, "batch_not_cancellable", status=409)
            batch.status = "cancelling"
            batch.times["cancelling_at"] = int(time.time())
            return batch.as_json()

    # -- working

    def _advance(self, batch: Batch) -> None:
        """Cancelling becomes cancelled at the next look; in progress, done once its time has come."""
        if batch.status == "cancelling":
            # Nothing was made yet (lines are made when the batch's time comes): no output file.
            batch.status = "cancelled"
            batch.times["cancelled_at"] = int(time.time())
        elif batch.status == "in_progress" and time.monotonic() >= batch.ready_at:
            self._run(batch)

    def _run(self, batch: Batch) -> None:
        stored = self.files.get(batch.input_file_id)
        if stored is None:  # deleted while the batch waited: nothing to run
            message = f"The input file {batch.input_file_id} was deleted."
            batch.status, batch.errors = "failed", [{"code": "file_not_found", "message": message}]
            batch.times["failed_at"] = int(time.time())
            return
        outputs, errors = [], []
        for number, raw in enumerate(line for line in stored.data.splitlines() if line.strip()):
            line = json.loads(raw)
            if batch.expire_after is not None and number >= batch.expire_after:
                message = "This request could not be executed before the completion window expired."
                errors.append(
                    _error_line(line["custom_id"], None, {"code": "batch_expired", "message": message})
                )
                continue
            status, body = self._answer(BATCH_ENDPOINTS[batch.endpoint], line["body"])
            request_id = "req_" + secrets.token_hex(16)
            result = {
                "id": "batch_req_" + secrets.token_hex(12),
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": request_id, "body": body},
                "error": None,
            }
            (outputs if status == 200 else errors).append(result)
        batch.counts["completed"], batch.counts["failed"] = len(outputs), len(errors)
        if outputs:
            batch.output_file_id = self._output_file(batch, "output", outputs)
        if errors:
            batch.error_file_id = self._output_file(batch, "error", errors)
        now = int(time.time())
        batch.times["finalizing_at"] = now
        if batch.expire_after is not None and batch.expire_after < batch.counts["total"]:
            batch.status = "expired"
            batch.times["expired_at"] = now
        else:
            batch.status = "completed"
            batch.times["completed_at"] = now

    def _answer(self, endpoint: str, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One line, answered as the synchronous endpoint would answer it (the same checks)."""
        fields = dict(fields)
        fault = self._next_fault(fields.get("prompt"))
        try:
            if fault is not None and fault.partition(":")[0] not in ("slow",):
                name = fault.partition(":")[0]
                if name in ("drop", "garbage"):
                    fault = "500"
                model = fields.get("model") if isinstance(fields.get("model"), str) else "gpt-image-2"
                raise fault_error(fault, model, "req_" + secrets.token_hex(16))
            if fields.get("stream"):
                raise ApiError("Streaming is not supported in the Batch API.", "stream", "invalid_value")
            files = json_edit_files(fields, self.file_bytes) if endpoint == "edits" else []
            job = resolve_job(endpoint, fields, files)
        except ApiError as error:
            return error.status, error.body()
        return 200, image_body(job)

    def _output_file(self, batch: Batch, kind: str, lines: list[dict[str, Any]]) -> str:
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        stored = StoredFile(
            id="file-" + secrets.token_hex(12),
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
            data=data,
        )
        self.files[stored.id] = stored
        return stored.id


def _error_line(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": response,
        "error": error,
    }
