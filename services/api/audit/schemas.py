from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.kit.schemas import Timestamp


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: Timestamp
    actor_id: uuid.UUID | None = Field(description="The API key that made the change")
    actor_name: str
    role: str
    action: str = Field(examples=["assessment.transition"])
    entity: str = Field(examples=["assessment"])
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None = Field(description="X-Request-ID of the request that made it")


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next (older) page; null on the last page"
    )
