"""Types shared by response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema

# Every time in a body is written the same way: ISO 8601 with its offset, "+00:00" for UTC
# (as Python's isoformat gives it), never "Z" for some fields and "+00:00" for others.
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
