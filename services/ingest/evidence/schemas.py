"""What the evidence endpoints answer."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from services.kit.schemas import Page


class RevisionOut(BaseModel):
    revision: int
    sha256: str
    size: int
    content_type: str
    filename: str
    uploaded_at: str


class EvidenceOut(BaseModel):
    id: uuid.UUID
    assessment_id: uuid.UUID
    node_ids: list[str]
    title: str
    agency_id: uuid.UUID | None = Field(
        description="The agency (OPD) of the region responsible for it, if one was named"
    )
    latest_revision: int
    revisions: list[RevisionOut]


class EvidencePage(Page[EvidenceOut]):
    """An assessment's evidence items with their revisions, on one page (``next_cursor``
    null)."""
