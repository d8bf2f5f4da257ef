"""A stand-in for OpenAI's content credentials: a signed marker in the stand-in's own images, and the check.

OpenAI's outputs carry a C2PA manifest (a PNG ``caBX`` chunk, JPEG APP11). The stand-in writes its own
marker in the same places: a JSON manifest with an HMAC over every other byte of the file. So any change
to the file (re-encoding, resizing, an appended chunk, a flipped byte) makes the check answer "invalid",
and a file without the marker answers "not_present", as the real check would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import time
import zlib
from datetime import UTC, datetime
from typing import Any

KEY = b"atelier-standin-c2pa"
ISSUER = "OpenAI (Atelier stand-in)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHUNK = b"caBX"
JPEG_APP11 = b"\xff\xeb"
WEBP_CHUNK = b"C2PA"
MAGIC = b"ATLR-C2PA:"


def _manifest(model: str, digest: str) -> bytes:
    generated_at = datetime.fromtimestamp(int(time.time()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return MAGIC + json.dumps({"model": model, "generated_at": generated_at, "hmac": digest}).encode()


def _sign(content: bytes) -> str:
    return hmac.new(KEY, content, hashlib.sha256).hexdigest()


def sign(data: bytes, output_format: str, model: str) -> bytes:
    """The image with a marker carrying an HMAC of all its other bytes."""
    if output_format == "png" and data.startswith(PNG_SIGNATURE):
        end = data.rfind(b"IEND") - 4  # before IEND's length field
        unsigned = data[:end] + data[end:]
        body = _manifest(model, _sign(unsigned))
        chunk = struct.pack(">I", len(body)) + PNG_CHUNK + body
        chunk += struct.pack(">I", zlib.crc32(PNG_CHUNK + body) & 0xFFFFFFFF)
        return data[:end] + chunk + data[end:]
    if output_format == "jpeg" and data.startswith(b"\xff\xd8"):
        body = _manifest(model, _sign(data))
        return data[:2] + JPEG_APP11 + struct.pack(">H", len(body) + 2) + body + data[2:]
    if output_format == "webp" and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        body = _manifest(model, _sign(data[12:]))
        chunk = WEBP_CHUNK + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")
        rest = data[12:] + chunk
        return b"RIFF" + struct.pack("<I", 4 + len(rest)) + b"WEBP" + rest
    return data


def _split(data: bytes) -> tuple[dict | None, bytes]:
    """(the manifest, the bytes it signed) or (None, data) when the file carries no marker."""
    try:
        if data.startswith(PNG_SIGNATURE):
            position = 8
            while position + 8 <= len(data):
                (length,) = struct.unpack(">I", data[position : position + 4])
                kind = data[position + 4 : position + 8]
                if kind == PNG_CHUNK:
                    body = data[position + 8 : position + 8 + length]
                    rest = data[:position] + data[position + 12 + length :]
                    return _parse(body), rest
                position += 12 + length
        elif data.startswith(b"\xff\xd8" + JPEG_APP11):
            (length,) = struct.unpack(">H", data[4:6])
            return _parse(data[6 : 4 + length]), data[:2] + data[4 + length :]
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            position = 12
            while position + 8 <= len(data):
                kind = data[position : position + 4]
                (length,) = struct.unpack("<I", data[position + 4 : position + 8])
                padded = length + (length % 2)
                if kind == WEBP_CHUNK:
                    return _parse(data[position + 8 : position + 8 + length]), data[12:position]
                position += 8 + padded
    except (struct.error, ValueError):
        return None, data
    return None, data


def _parse(body: bytes) -> dict | None:
    if not body.startswith(MAGIC):
        return None
    try:
        manifest = json.loads(body[len(MAGIC) :])
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def check(data: bytes) -> dict[str, Any]:
    """What /v1/content_provenance_checks answers for these bytes (a ContentProvenanceCheck)."""
    manifest, signed = _split(data)
    now = int(time.time())
    if manifest is None:
        c2pa = {"type": "c2pa", "outcome": "not_detected", "validation_state": "not_present"}
        synthid = {"type": "synthid", "outcome": "not_detected"}
    else:
        valid = hmac.compare_digest(str(manifest.get("hmac", "")), _sign(signed))
        c2pa = {
            "type": "c2pa",
            "outcome": "detected",
            "validation_state": "trusted" if valid else "invalid",
            "issuer": ISSUER,
            "model": manifest.get("model"),
            "generated_at": manifest.get("generated_at"),
        }
        # The watermark lives in the pixels, so it survives changes to the file's bytes.
        synthid = {
            "type": "synthid",
            "outcome": "detected",
            "model": manifest.get("model"),
            "generated_at": manifest.get("generated_at"),
        }
    return {"object": "content_provenance_check", "created_at": now, "results": [c2pa, synthid]}
