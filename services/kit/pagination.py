"""Opaque cursors for keyset pagination: stable order, no OFFSET scans."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from services.kit.errors import invalid


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise invalid(
            "query",
            "/cursor",
            "malformed cursor",
            "query /cursor: not a cursor this endpoint issued",
        )
    return key
