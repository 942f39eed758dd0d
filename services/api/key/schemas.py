"""API keys and the caller's own key, as the API shows them: never a secret or its hash."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.result.schemas import AssessmentOut
from services.kit.schemas import Page, Timestamp
from services.models import Role


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str = Field(examples=["Bogor Single Window"])
    role: Role
    regions: list[str] = Field(
        description="Kemendagri codes the key acts for (super-app, region-operator)",
        examples=[["32.71"]],
    )
    prefix: str = Field(
        description="The start of the secret, to tell keys apart", examples=["cerdas_Xk3v9Q"]
    )
    created_at: Timestamp
    revoked_at: Timestamp | None = Field(description="Null while the key is live")


class KeyPage(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next (older) page; null on the last page"
    )


class MeOut(BaseModel):
    """Who the request is made by: an API key, or a person signed in with their organisation's
    SSO (role and regions from their token)."""

    id: uuid.UUID = Field(description="The key's id, or the person's (for assignments, audit)")
    kind: Literal["key", "person"]
    name: str
    role: Role
    regions: list[str] = Field(examples=[["32.71"]])
    issuer: str | None = Field(default=None, description="A person's SSO (OpenID issuer)")
    sub: str | None = Field(default=None, description="A person's subject identifier there")
    nip: str | None = Field(default=None, description="A person's NIP, when the token has it")


class AssignmentPage(Page[AssessmentOut]):
    """The assessments assigned to the caller, all on one page (``next_cursor`` null)."""
