"""Opaque cursors for keyset pagination: stable order, no OFFSET scans."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

from services.kit.edge import unstorable
from services.kit.errors import invalid


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_MAX_TEXT = 200
_MAX_BIGINT = 2**63 - 1


def _fits(part: Any, kind: type) -> bool:
    if kind is int:
        return type(part) is int and 0 <= part <= _MAX_BIGINT
    if kind is uuid.UUID:
        try:
            uuid.UUID(str(part))
        except ValueError:
            return False
        return isinstance(part, str)
    return isinstance(part, str) and len(part) <= _MAX_TEXT and unstorable(part) is None


def decode_cursor(cursor: str, *kinds: type) -> list[Any]:
    """The key a cursor holds, each part checked against ``kinds`` (int, str, or uuid.UUID for
    a UUID's text): a forged or damaged cursor is a 422, never a query that fails."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(kinds)
        or not all(_fits(part, kind) for part, kind in zip(key, kinds, strict=True))
    ):
        raise invalid(
            "query",
            "/cursor",
            "malformed cursor",
            "query /cursor: not a cursor this endpoint issued",
        )
    return key
