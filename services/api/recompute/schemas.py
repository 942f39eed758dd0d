from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.kit.schemas import Timestamp
from services.models import RecomputeRun


class RecomputeRunIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"framework": "spbe-2020", "period": 2024}]}
    )

    framework: str | None = Field(default=None, examples=["spbe-2020"])
    period: Annotated[int | None, Field(ge=2000, le=2100, examples=[2024])] = None
    region: str | None = Field(default=None, examples=["32.71"])


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str = "recompute-run"
    state: str = Field(description="queued, running, done or failed")
    framework: str | None
    period: int | None
    region: str | None
    total: int
    done: int
    failed: int
    requested_by: str
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None

    @classmethod
    def of(cls, run: RecomputeRun) -> JobOut:
        return cls(
            id=run.id,
            state=run.state,
            framework=run.framework_id,
            period=run.period,
            region=run.region_code,
            total=run.total,
            done=run.done,
            failed=run.failed,
            requested_by=run.requested_by,
            created_at=run.created_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
        )
