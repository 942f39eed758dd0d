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
    actor_person_id: uuid.UUID | None = Field(
        description="The person (signed in with their organisation's SSO) who made the change"
    )
    actor_subject: str | None = Field(
        description="The person's subject identifier (`sub`) at their SSO", examples=["f:1a2b:siti"]
    )
    actor_nip: str | None = Field(
        description="The person's NIP, when their sign-in carries it",
        examples=["198701012010012001"],
    )
    actor_name: str = Field(description="The key's name, or the person's name")
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
