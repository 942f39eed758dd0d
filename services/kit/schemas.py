"""Types shared by response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

# Every time in a body is written the same way: ISO 8601 with its offset, "+00:00" for UTC
# (as Python's isoformat gives it), never "Z" for some fields and "+00:00" for others.
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """A list answer: the items and the cursor of the next page. Every list endpoint answers
    this shape; a list that always fits one page (a catalogue, an assessment's evidence
    requests) has ``next_cursor`` null."""

    items: list[Item]
    next_cursor: str | None = Field(
        default=None,
        description="Pass as ?cursor= to get the next page; null on the last page",
    )
