"""What the agency (OPD) endpoints take and answer: agencies, who answers for which indicator
(PJ), the per-agency view of an assessment and its plan, and agencies side by side."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from services.api.result.schemas import AgencyRef, Out, PlanStep
from services.kit.schemas import Timestamp
from services.models import AgencyKind, AssessmentState


class AgencyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Dinas Komunikasi dan Informatika",
                    "short_name": "Diskominfo",
                    "kind": "dinas",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200, examples=["Dinas Komunikasi dan Informatika"])
    short_name: str | None = Field(
        default=None, min_length=1, max_length=60, examples=["Diskominfo"]
    )
    kind: AgencyKind = Field(examples=["dinas"])


class AgencyPatch(BaseModel):
    """The fields to change; a field left out keeps its value (``short_name`` null clears it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"short_name": "Diskominfosatik"}]},
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    short_name: str | None = Field(default=None, min_length=1, max_length=60)
    kind: AgencyKind | None = None


class AgencyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    region: str = Field(validation_alias="region_code", description="Kemendagri code")
    name: str
    short_name: str | None
    kind: AgencyKind
    created_at: Timestamp
    updated_at: Timestamp


class AgencyPage(BaseModel):
    items: list[AgencyOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next page; null on the last page"
    )


class ResponsibilitiesIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"nodes": {"I1": "5b0c8f9e-6d1a-4b43-8e7a-1f0f3c9d2a10", "I2": None}}]
        },
    )

    nodes: dict[str, uuid.UUID | None] = Field(
        min_length=1,
        max_length=500,
        description="Indicator (leaf) id → the agency responsible for it (PJ); null: none",
        examples=[{"I1": "5b0c8f9e-6d1a-4b43-8e7a-1f0f3c9d2a10", "I2": None}],
    )


class ResponsibilitiesOut(Out):
    assessment_id: uuid.UUID
    nodes: dict[str, AgencyRef] = Field(
        description="Every indicator with an agency responsible for it (PJ) → that agency"
    )


class OwnedIndicator(Out):
    node: str
    name: str
    value: str | None = Field(description="Its current value (decimal text); null without one")
    value_from: str | None = Field(description="'verified' or 'self'; null without a value")
    gap: PlanStep | None = Field(description="The plan's step on it, if the plan raises it")


class AgencyShare(Out):
    """What one agency answers for in the assessment, and its part of the plan."""

    agency: AgencyRef | None = Field(description="Null: indicators no agency answers for yet")
    indicators: list[OwnedIndicator]
    steps: int = Field(description="Steps of the plan on its indicators")
    cost: str = Field(description="Their cost (decimal text)")
    contribution: str = Field(
        description="What they add to the unrounded index (decimal text, the sum of the "
        "steps' rounded contributions)"
    )
    open_evidence_requests: int = Field(
        description="Open evidence requests naming one of its indicators"
    )


class AgencyPlan(Out):
    """The assessment's indicators by the agency responsible (PJ), each with its current value
    and, for a target, the plan's steps on it: who has to do what."""

    assessment: uuid.UUID
    framework: str
    internal: bool
    target: str | None
    target_index: str | None
    reachable: bool | None
    current_index: str | None = Field(description="The index the plan starts from")
    index: str | None = Field(description="The published index after the plan")
    predicate: str | None
    agencies: list[AgencyShare] = Field(
        description="Agencies of the region with indicators (by name), then the unassigned"
    )


class AgencyColumn(Out):
    agency: AgencyRef
    assessment: uuid.UUID | None = Field(
        description="Its internal assessment for the framework and period; null: none"
    )
    state: AssessmentState | None
    index: str | None = Field(description="Decimal text; null when not computed")
    predicate: str | None


class ComparedIndicator(Out):
    id: str
    name: str
    parent: str | None
    leaf: bool
    values: dict[str, str | None] = Field(
        description="Agency id → the node's value in its internal assessment (decimal text)"
    )


class WeakIndicator(Out):
    id: str
    name: str
    mean: str = Field(description="Mean value over the agencies with one (decimal text)")
    share: str = Field(
        description="The mean as a share of the indicator's scale, 0–1 (decimal text): "
        "what the list is sorted by"
    )
    lowest: str = Field(description="The lowest value (decimal text)")
    lowest_agencies: list[uuid.UUID] = Field(description="The agencies with the lowest value")
    agencies: int = Field(description="How many agencies have a value")


class AgencyComparison(Out):
    """A region's agencies side by side on their internal assessments, node by node, and the
    indicators weakest across them. Inside the region only; never an official figure."""

    region: str
    framework: str
    period: int
    agencies: list[AgencyColumn]
    nodes: list[ComparedIndicator]
    weakest: list[WeakIndicator] = Field(
        description="Indicators (leaves) by their mean across agencies as a share of their "
        "scale, weakest first, at most 10"
    )
