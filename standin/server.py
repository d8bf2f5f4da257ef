"""The HTTP side: the request handler, and ``StandinServer`` that tests, demo mode and benchmarks start.

``python -m standin --port 8765 --latency 0.5`` serves it in the foreground (``main``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import random
import re
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from standin import provenance
from standin.batches import BatchService
from standin.capabilities import MAX_BODY_BYTES, MODELS, RETIRED_MODELS, models_from
from standin.conversation import Conversations, TurnRun, resolve_turn
from standin.errors import ApiError
from standin.faults import FAULT_PATTERN, LATE_FAULTS, PROMPT_FAULT_PATTERN, fault_error
from standin.requests import RecordedRequest, coerce_form_fields, json_edit_files, parse_multipart
from standin.responses import completed_event, image_body, partial_event, stream_payloads
from standin.validation import ImageJob, resolve_job


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server_version = "AtelierStandin/1.0"
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.standin.log_requests:
            sys.stderr.write(f"[standin] {self.address_string()} {format % args}\n")

    # -- plumbing

    def _begin(self) -> str:
        self.request_id = "req_" + secrets.token_hex(16)
        self.started = time.monotonic()
        return urlsplit(self.path).path

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise ApiError("Request body too large.", status=413)
        return self.rfile.read(length)

    def _send_headers(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("x-request-id", self.request_id)
        self.send_header("openai-processing-ms", str(round((time.monotonic() - self.started) * 1000)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send_headers(status, content_type, {"content-length": str(len(body)), **(headers or {})})
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_error(self, error: ApiError, record: RecordedRequest | None = None) -> None:
        if record is not None:
            record.status = error.status
        self._send_json(error.status, error.body(), error.headers)

    # -- routing

    def do_GET(self) -> None:
        path = self._begin()
        standin = self.server.standin
        if path == "/healthz":
            self._send(200, b"ok", "text/plain; charset=utf-8")
        elif path == "/_standin/requests":
            self._send_json(200, [recorded.summary() for recorded in list(standin.requests)])
        elif path == "/_standin/faults":
            self._send_json(200, {"faults": standin.queued_faults(), "latency": standin.latency})
        elif path.startswith(("/v1/files", "/v1/batches")):
            self._batch_api("GET", path, b"")
        else:
            self._send_error(ApiError(f"Invalid URL (GET {path})", status=404))

    def do_POST(self) -> None:
        path = self._begin()
        try:
            body = self._read_body()
            if path.startswith("/_standin/"):
                self._control(path, body)
            elif path in ("/v1/images/generations", "/v1/images/edits"):
                self._image_request(path, body)
            elif path.startswith(("/v1/files", "/v1/batches")):
                self._batch_api("POST", path, body)
            elif path == "/v1/responses":
                self._responses_request(path, body)
            elif path == "/v1/content_provenance_checks":
                self._provenance_request(path, body)
            else:
                self._send_error(ApiError(f"Invalid URL (POST {path})", status=404))
        except ApiError as error:  # only an oversized body gets here; its bytes are still unread
            self.close_connection = True
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired); nobody to answer

    def do_DELETE(self) -> None:
        path = self._begin()
        if path.startswith("/v1/files"):
            self._batch_api("DELETE", path, b"")
        else:
            self._send_error(ApiError(f"Invalid URL (DELETE {path})", status=404))

    def _control(self, path: str, body: bytes) -> None:
        standin = self.server.standin
        try:
            payload = json.loads(body or b"{}")
            if path == "/_standin/faults":
                standin.inject(*payload["faults"])
            elif path == "/_standin/latency":
                standin.latency = float(payload["latency"])
                standin.latency_jitter = float(payload.get("latency_jitter", standin.latency_jitter))
            elif path == "/_standin/reset":
                standin.reset()
            elif path == "/_standin/batches":
                # The Batch API's knobs: seconds until a batch is done, lines made before it expires, and
                # how many of the next file deletes fail.
                standin.batches.batch_seconds = float(payload.get("seconds", standin.batches.batch_seconds))
                expire_after = payload.get("expire_after", standin.batches.batch_expire_after)
                standin.batches.batch_expire_after = None if expire_after is None else int(expire_after)
                failures = payload.get("delete_failures", standin.batches.delete_failures)
                standin.batches.delete_failures = int(failures)
            else:
                return self._send_error(ApiError(f"Invalid URL (POST {path})", status=404))
        except (ValueError, KeyError, TypeError) as error:
            return self._send_error(ApiError(f"Bad control request: {error!r}"))
        self._send_json(200, {"ok": True, "faults": standin.queued_faults(), "latency": standin.latency})

    def _authorized(self) -> bool:
        authorization = self.headers.get("authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:].strip():
            return True
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        self._send_error(ApiError(message, status=401))
        return False

    def _batch_api(self, method: str, path: str, body: bytes) -> None:
        """The Files and Batch APIs (standin/batches.py)."""
        if not self._authorized():
            return
        batches = self.server.standin.batches
        parts = path.strip("/").split("/")[1:]  # after "v1"
        try:
            if method == "POST" and parts == ["files"]:
                content_type = self.headers.get("content-type", "")
                if not content_type.startswith("multipart/form-data"):
                    raise ApiError("Uploads must be multipart/form-data with 'file' and 'purpose'.")
                fields, files = parse_multipart(content_type, body)
                return self._send_json(200, batches.file_create(fields, files))
            if method == "GET" and len(parts) == 2 and parts[0] == "files":
                return self._send_json(200, batches.file_get(parts[1]).as_json())
            if method == "DELETE" and len(parts) == 2 and parts[0] == "files":
                return self._send_json(200, batches.file_delete(parts[1]))
            if method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
                return self._send(200, batches.file_get(parts[1]).data, "application/octet-stream")
            if method == "POST" and parts == ["batches"]:
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    raise ApiError(
                        "We could not parse the JSON body of your request. Send valid JSON."
                    ) from None
                return self._send_json(200, batches.batch_create(payload))
            if method == "GET" and parts == ["batches"]:
                query = dict(
                    pair.partition("=")[::2] for pair in urlsplit(self.path).query.split("&") if pair
                )
                limit = int(query["limit"]) if query.get("limit", "").isdigit() else 20
                return self._send_json(200, batches.batch_list(limit, query.get("after", "")))
            if method == "GET" and len(parts) == 2 and parts[0] == "batches":
                return self._send_json(200, batches.batch_get(parts[1]))
            if method == "POST" and len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
                return self._send_json(200, batches.batch_cancel(parts[1]))
            raise ApiError(f"Invalid URL ({method} {path})", status=404)
        except ApiError as error:
            self._send_error(error)

    def _image_request(self, path: str, body: bytes) -> None:
        standin = self.server.standin
        endpoint = path.rsplit("/", 1)[1]
        record = RecordedRequest(path=path, headers={k.lower(): v for k, v in self.headers.items()})
        record.request_id = self.request_id
        standin._record(record)
        content_type = self.headers.get("content-type", "")
        try:
            if content_type.startswith("multipart/form-data"):
                record.fields, record.files = parse_multipart(content_type, body)
                fields = coerce_form_fields(record.fields)
            else:
                fields = json.loads(body or b"{}")
                if not isinstance(fields, dict):
                    raise ValueError("the body is not a JSON object")
                record.fields = {k: v for k, v in fields.items() if k not in ("images", "mask", "markup")}
                if endpoint == "edits":
                    record.files = json_edit_files(fields, standin.batches.file_bytes)
        except ApiError as error:
            return self._send_error(error, record)
        except ValueError:
            message = "We could not parse the JSON body of your request. Send valid JSON."
            return self._send_error(ApiError(message), record)

        authorization = self.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return self._send_error(ApiError(message, status=401), record)

        record.fault = fault = standin._next_fault(fields.get("prompt"))
        if fault is not None:
            name, _, argument = fault.partition(":")
            if name in LATE_FAULTS:
                standin._sleep(standin._latency_sample())
            if name == "slow":
                standin._sleep(float(argument or 30))  # then answer normally, if anyone still listens
            elif name == "drop":
                self.close_connection = True
                return
            elif name == "garbage":
                record.status = 200
                return self._send(200, b"<html>oops", "application/json")
            else:
                model = fields.get("model") if isinstance(fields.get("model"), str) else "gpt-image-2"
                return self._send_error(fault_error(fault, model, self.request_id), record)

        try:
            job = resolve_job(endpoint, fields, record.files, standin.models, standin.retired)
        except ApiError as error:
            return self._send_error(error, record)
        record.status = 200
        if job.stream:
            return self._stream(job, "image_edit" if endpoint == "edits" else "image_generation", record)
        standin._sleep(standin._latency_sample())
        body = image_body(job)
        record.sent_sha256 = [_sha256_of_b64(item["b64_json"]) for item in body["data"]]
        self._send_json(200, body)
        record.completed, record.completed_at = True, time.time()

    def _authorised(self, record: RecordedRequest) -> bool:
        authorization = self.headers.get("authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:].strip():
            return True
        self._send_error(ApiError("You didn't provide an API key.", status=401), record)
        return False

    def _responses_request(self, path: str, body: bytes) -> None:
        standin = self.server.standin
        record = RecordedRequest(path=path, headers={k.lower(): v for k, v in self.headers.items()})
        record.request_id = self.request_id
        standin._record(record)
        try:
            fields = json.loads(body or b"{}")
            if not isinstance(fields, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError:
            return self._send_error(ApiError("We could not parse the JSON body of your request."), record)
        # Kept without the images' base64, which tests do not need to read back.
        record.fields = json.loads(re.sub(r'"data:image/[^"]*"', '"data:…"', json.dumps(fields)))
        if not self._authorised(record):
            return None
        record.fault = fault = standin._next_fault(None)
        if fault is not None:
            model = fields.get("model") if isinstance(fields.get("model"), str) else "gpt-5.5"
            return self._send_error(fault_error(fault, model, self.request_id), record)
        try:
            turn = resolve_turn(fields, standin.conversations, models=standin.models, retired=standin.retired)
        except ApiError as error:
            return self._send_error(error, record)
        run = TurnRun(turn, standin.conversations)
        record.status = 200
        record.sent_sha256 = [_sha256_of_b64(run.result_b64)]
        record.response_id = run.id
        if not turn.stream:
            standin._sleep(standin._latency_sample())
            self._send_json(200, run.response())
        else:
            events = run.events()
            pause = standin._latency_sample() / max(1, len(run.partials) + 1)
            self._send_headers(
                200,
                "text/event-stream; charset=utf-8",
                {"cache-control": "no-cache", "transfer-encoding": "chunked"},
            )
            for event in events:
                if event["type"].endswith((".partial_image", ".completed")):
                    standin._sleep(pause)
                self._write_event(event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        record.completed, record.completed_at = True, time.time()
        return None

    def _provenance_request(self, path: str, body: bytes) -> None:
        standin = self.server.standin
        record = RecordedRequest(path=path, headers={k.lower(): v for k, v in self.headers.items()})
        record.request_id = self.request_id
        standin._record(record)
        content_type = self.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return self._send_error(ApiError("Send the file as multipart/form-data."), record)
        try:
            _fields, record.files = parse_multipart(content_type, body)
        except ApiError as error:
            return self._send_error(error, record)
        if not self._authorised(record):
            return None
        with standin._lock:
            failing = standin.provenance_failures > 0
            standin.provenance_failures -= failing
        if failing:
            return self._send_error(
                ApiError("The server had an error processing your request.", status=500, type="server_error"),
                record,
            )
        files = [part for part in record.files if part[0] == "file"]
        if len(files) != 1 or not files[0][3]:
            return self._send_error(
                ApiError("Missing required parameter: 'file'.", "file", "missing_required_parameter"), record
            )
        record.status = 200
        self._send_json(200, provenance.check(files[0][3]))
        record.completed, record.completed_at = True, time.time()
        return None

    def _stream(self, job: ImageJob, event_prefix: str, record: RecordedRequest) -> None:
        standin = self.server.standin
        pause = standin._latency_sample() / (job.partial_images + 1)  # spread the latency over the events
        headers = {"cache-control": "no-cache", "transfer-encoding": "chunked"}
        self._send_headers(200, "text/event-stream; charset=utf-8", headers)
        previews, final_b64 = stream_payloads(job)
        record.sent_sha256 = [_sha256_of_b64(final_b64)]
        for partial_index, preview in enumerate(previews):
            standin._sleep(pause)
            self._write_event(partial_event(job, event_prefix, partial_index, preview))
        standin._sleep(pause)
        self._write_event(completed_event(job, event_prefix, final_b64))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        record.completed, record.completed_at = True, time.time()

    def _write_event(self, payload: dict[str, Any]) -> None:
        data = f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")  # one HTTP chunk per event
        self.wfile.flush()


def _sha256_of_b64(data: str) -> str:
    return hashlib.sha256(base64.b64decode(data)).hexdigest()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # benchmarks open dozens of connections at once; a short backlog drops SYNs
    standin: StandinServer


# --------------------------------------------------------------------------------------------------
# Public API


class StandinServer:
    """The stand-in, served from a background thread (``start``) or the foreground (``serve_forever``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        log_requests: bool = False,
        models: dict | None = None,
    ) -> None:
        """`models`: name -> capabilities (ModelCapabilities, or the workspace's rows as plain dicts, a
        "retired" note marking retired ones); the built-in tables when None."""
        self.use_models(models)
        self.host, self.port = host, port
        self.latency, self.latency_jitter = latency, latency_jitter
        self.log_requests = log_requests
        self.requests: list[RecordedRequest] = []
        self.conversations = Conversations()  # stored responses, for previous_response_id
        self.provenance_failures = 0  # the next this many provenance checks answer 500
        self._faults: deque[str] = deque()
        # The Files and Batch APIs; knobs: batches.batch_seconds, batches.batch_expire_after.
        self.batches = BatchService(self._next_fault)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False  # shutdown() would wait forever on a server that never served

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The stand-in is not listening yet; call start() first.")
        # A wildcard bind is reachable on loopback; clients cannot connect to the wildcard itself.
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._httpd.server_address[1]}/v1"

    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            server_class = _HTTPServer
            if ":" in self.host:
                server_class = type("_HTTPServerV6", (_HTTPServer,), {"address_family": socket.AF_INET6})
            self._httpd = server_class((self.host, self.port), _Handler)
            self._httpd.standin = self
            self._stopping.clear()
        return self._httpd

    def start(self) -> StandinServer:
        httpd = self._bind()
        # A short poll interval keeps stop() quick; idle polling costs next to nothing.
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="standin-http", daemon=True
        )
        self._serving = True
        self._thread.start()
        return self

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serves in the calling thread until KeyboardInterrupt; ``on_ready`` receives the base URL."""
        httpd = self._bind()
        if on_ready is not None:
            on_ready(self.base_url)
        self._serving = True
        try:
            httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers that are sleeping out a latency or a "slow" fault
        if self._serving:
            httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread, self._serving = None, False
        httpd.server_close()

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def use_models(self, models: dict | None) -> None:
        """Check requests against these models from now on (see __init__); None: the built-in tables."""
        self.models, self.retired = (MODELS, RETIRED_MODELS) if models is None else models_from(models)

    # -- faults and records

    def inject(self, *faults: str) -> None:
        for fault in faults:
            if not isinstance(fault, str) or not FAULT_PATTERN.match(fault):
                raise ValueError(f"Unknown stand-in fault {fault!r}")
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def queued_faults(self) -> list[str]:
        with self._lock:
            return list(self._faults)

    def reset(self) -> None:
        """Forgets queued faults, recorded requests, files and batches."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.provenance_failures = 0
        self.batches.reset()

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    def _next_fault(self, prompt: Any) -> str | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is None and isinstance(prompt, str):
            match = PROMPT_FAULT_PATTERN.search(prompt)
            fault = match.group(1) if match and FAULT_PATTERN.match(match.group(1)) else None
        return None if fault == "ok" else fault

    def _latency_sample(self) -> float:
        jitter = random.uniform(-self.latency_jitter, self.latency_jitter) if self.latency_jitter else 0.0
        return max(0.0, self.latency + jitter)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m standin", description="Stand-in for the OpenAI Images API"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each image answer")
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="± seconds added at random")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument(
        "--batch-seconds", type=float, default=5.0, help="seconds until a Batch API batch is done"
    )
    parser.add_argument(
        "--models", help="a JSON file of model name -> capabilities (the workspace's registry)"
    )
    options = parser.parse_args(argv)
    models = None
    if options.models:
        with open(options.models, encoding="utf-8") as handle:
            models = json.load(handle)
    server = StandinServer(options.host, options.port, options.latency, options.latency_jitter, models=models)
    server.batches.batch_seconds = options.batch_seconds
    server.log_requests = not options.quiet
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(on_ready=lambda url: print(f"Stand-in OpenAI Images API at {url}", flush=True))


if __name__ == "__main__":
    main()
