from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.models import RegionKind


class RegionOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "code": "32.71",
                "name": "Kota Bogor",
                "kind": "kota",
                "province_code": "32",
            }
        },
    )

    code: str = Field(description="Kemendagri code, dotted: '32' (province), '32.71' (kota)")
    name: str
    kind: RegionKind
    province_code: str | None = Field(description="Parent province; null for a province")


class RegionPage(BaseModel):
    items: list[RegionOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next page; null on the last page"
    )
