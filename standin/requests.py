"""Reading a request: multipart form fields and files, or JSON with data-URL images; what was recorded."""

import base64
import binascii
import email.parser
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standin.capabilities import INTEGER_PARAMS
from standin.errors import ApiError

FilePart = tuple[str, str, str, bytes]  # (form field name, filename, content type, bytes)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)
    status: int = 0  # 0 until answered; stays 0 when the connection was dropped on purpose
    fault: str | None = None
    # The sha256 of each final image sent (in index order), and whether the whole answer was written:
    # what a client that survived the call must have stored, and a call it must have been billed for.
    sent_sha256: list[str] = field(default_factory=list)
    completed: bool = False
    completed_at: float = 0.0  # time.time() when the last byte was written
    request_id: str = ""
    response_id: str = ""  # /v1/responses: the id of the response answered

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view without file bytes or the API key."""
        headers = {k: ("Bearer ***" if k == "authorization" else v) for k, v in self.headers.items()}
        files = [
            {"field": name, "filename": filename, "content_type": content_type, "size": len(data)}
            for name, filename, content_type, data in self.files
        ]
        return {**self.__dict__, "headers": headers, "files": files}


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], list[FilePart]]:
    envelope = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(envelope + body)
    if not message.is_multipart():
        raise ApiError("Could not parse the multipart/form-data body of your request.")
    fields: dict[str, Any] = {}
    files: list[FilePart] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ApiError("Every multipart part needs a form-data name.")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None and part.get("content-type") is None:
            fields[name] = payload.decode("utf-8", errors="replace")
        else:
            files.append((name, filename or "", part.get_content_type(), payload))
    return fields, files


def coerce_form_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Form fields arrive as text; turn the numeric and boolean ones into what JSON would carry."""
    coerced = dict(fields)
    for name, value in fields.items():
        if name in INTEGER_PARAMS and re.fullmatch(r"-?\d+", value):
            coerced[name] = int(value)
        elif name == "stream" and value in ("true", "false"):
            coerced[name] = value == "true"
    return coerced


FileLookup = Callable[[str], bytes | None]


def _sniff_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _decode_data_url(reference: Any, param: str, files_by_id: FileLookup | None = None) -> tuple[str, bytes]:
    file_id = reference.get("file_id") if isinstance(reference, dict) else None
    if file_id is not None:
        if isinstance(reference, dict) and reference.get("image_url") is not None:
            message = f"Invalid '{param}': provide exactly one of 'image_url' or 'file_id'."
            raise ApiError(message, param, "invalid_value")
        data = files_by_id(file_id) if files_by_id is not None and isinstance(file_id, str) else None
        if data is None:
            raise ApiError(f"No such File object: {file_id}", param, "invalid_value", status=404)
        return _sniff_type(data), data
    url = reference.get("image_url") if isinstance(reference, dict) else None
    match = re.fullmatch(r"data:([\w/+.-]+);base64,(.*)", url or "", flags=re.DOTALL)
    if not match:
        raise ApiError(
            f'Invalid \'{param}\': the stand-in only accepts {{"image_url": "data:...;base64,..."}}.',
            param,
            "invalid_value",
        )
    try:
        return match.group(1), base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        raise ApiError(f"Invalid base64 data in '{param}.image_url'.", param, "invalid_value") from None


def json_edit_files(fields: dict[str, Any], files_by_id: FileLookup | None = None) -> list[FilePart]:
    """Moves JSON edit image references (``images``, ``mask``, ``markup``) into file-part shape.

    A reference is ``{"image_url": "data:..."}`` or ``{"file_id": "file-..."}``, read through
    ``files_by_id`` (the stand-in's Files API store)."""
    files: list[FilePart] = []
    images = fields.pop("images", None)
    if images is not None and not isinstance(images, list):
        raise ApiError("Invalid type for 'images': expected an array.", "images", "invalid_type")
    for index, reference in enumerate(images or []):
        files.append(("images", "", *_decode_data_url(reference, f"images[{index}]", files_by_id)))
    for name in ("mask", "markup"):
        if fields.get(name) is not None:
            files.append((name, "", *_decode_data_url(fields.pop(name), name, files_by_id)))
    return files
