"""What the result reads answer: assessments, the explained tree, summaries, rankings, trends,
comparisons and dashboard figures.

Decimals are strings, exactly as stored and rounded ("3.72", "27.2000"), never floats. Every
field is always present; absent values are null. Fields are declared in the order the JSON
gives them.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from services.models import AgencyKind, AssessmentState
from services.scoring.engine.result import Source

DECIMAL = "Decimal text, e.g. '3.72'; null when not computed"
TIME: JsonDict = {"format": "date-time"}


class Out(BaseModel):
    """A response body: built by the API itself, so never re-checked against extra keys."""

    model_config = ConfigDict(frozen=True)


class RegionRef(Out):
    code: str = Field(description="Kemendagri code, e.g. 32.71")
    name: str
    province_code: str | None = Field(description="Parent province; null for a province")


class AgencyRef(Out):
    """An agency (perangkat daerah, OPD) of a region."""

    id: uuid.UUID
    name: str = Field(examples=["Dinas Komunikasi dan Informatika"])
    short_name: str | None = Field(examples=["Diskominfo"])
    kind: AgencyKind


class IndexFigure(Out):
    value: str | None = Field(description=DECIMAL)
    predicate: str | None


class Indices(Out):
    """The index computed from one kind of value only, beside the index that counts (which
    takes each leaf's verified value, else the region's own)."""

    self_assessed: IndexFigure = Field(
        description="From the region's own values only (outside-index, metric-driven and "
        "linked leaves as for the index; no official values of inner nodes)"
    )
    verified: IndexFigure = Field(
        description="From the assessors' verified values only: a leaf without one is missing, "
        "so the value is null while a required leaf has none"
    )


class ResultSummary(Out):
    """The stored result of an assessment, as of its last computation."""

    index: str | None = Field(description=DECIMAL)
    predicate: str | None = Field(description="The index's predicate, e.g. 'Sangat Baik'")
    indices: Indices = Field(description="The self-assessed and the verified index, side by side")
    complete: bool = Field(description="Every required input was given")
    input_revision: int = Field(description="The assessment's input revision it was computed at")
    computed_at: str = Field(description="When it was computed (ISO 8601)", json_schema_extra=TIME)
    error: str | None = Field(description="Why the inputs could not be scored, if so")


class AssessmentOut(Out):
    """An assessment with its region and the summary of its stored result."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "0b7d6c1e-3f7a-4f4e-9a41-0c5d0e9f2a11",
                "region": {"code": "32.71", "name": "Kota Bogor", "province_code": "32"},
                "framework": "spbe-2020",
                "period": 2024,
                "stage": "final",
                "state": "published",
                "input_revision": 3,
                "result": {
                    "index": "3.72",
                    "predicate": "Sangat Baik",
                    "indices": {
                        "self_assessed": {"value": "3.74", "predicate": "Sangat Baik"},
                        "verified": {"value": "3.72", "predicate": "Sangat Baik"},
                    },
                    "complete": True,
                    "input_revision": 3,
                    "computed_at": "2024-11-02T08:15:00.123456+00:00",
                    "error": None,
                },
                "internal": False,
                "agency": None,
            }
        }
    )

    id: uuid.UUID
    region: RegionRef
    framework: str = Field(description="Framework id, e.g. spbe-2020")
    period: int = Field(description="Evaluation year")
    stage: str = Field(description="Evaluation stage, e.g. final")
    state: AssessmentState = Field(description="Where the assessment is in the workflow")
    input_revision: int = Field(description="Bumped by every change to the inputs")
    result: ResultSummary | None = Field(description="Null until the first computation")
    internal: bool = Field(
        description="An internal evaluation of one of the region's agencies (OPD): seen "
        "inside the region only, never in rankings, trends, comparisons, dashboards or exports"
    )
    agency: AgencyRef | None = Field(
        description="The agency evaluated internally; null for the official assessment"
    )


class AssessmentPage(Out):
    items: list[AssessmentOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next page; null on the last page"
    )


class AssessorOutputOut(Out):
    """What the external assessor recorded on a node. The three judgements are null until
    made."""

    evidence_uploaded: bool | None = Field(description="Evidence was uploaded")
    interview_confirmed: bool | None = Field(description="Confirmed in the interview (wawancara)")
    approved: bool | None = Field(description="Approved by the assessor")
    catatan: str | None = Field(description="The assessor's note")
    rekomendasi: str | None = Field(description="The assessor's recommendation")
    shared_with_region: bool = Field(
        description="The region reads it before the assessment is published"
    )
    updated_at: str = Field(
        description="When it was last written (ISO 8601)", json_schema_extra=TIME
    )


class ResultNodeOut(Out):
    """One node of the explained result tree (and one row of the results export)."""

    id: str
    name: str
    parent: str | None = Field(description="The parent node's id; null for a root")
    value: str | None = Field(description=DECIMAL)
    predicate: str | None
    weight: str | None = Field(description="Decimal text; null when not computed")
    contribution: str | None = Field(description="Weighted share of the parent's value")
    source: Source = Field(description="Where the value came from; 'missing' when not computed")
    inputs: list[str] = Field(
        description="What it was computed from: child ids, metric:<key>, linked:<framework>/<node>"
    )
    missing: list[str] = Field(description="Required inputs below it that were not given")
    note: str | None
    metrics: dict[str, str] = Field(
        description="For a metric-driven leaf, the metric values it was computed from (each "
        "metric's latest region-wide value in the period's year, decimal text), e.g. "
        "{'integrated_apps': '148', 'integrated_apps_target': '327'}; empty for other nodes",
    )
    value_from: str | None = Field(
        description="For an entered value: 'verified' (the assessor's) or 'self' (the region's)"
    )
    evidence_count: int = Field(description="Evidence items attached to this node")
    input_revision: int | None
    computed_at: str | None = Field(json_schema_extra=TIME)
    assessor: AssessorOutputOut | None = Field(
        description="The assessor's output on this node; null when none is recorded or the "
        "caller may not read it yet (the region: before publication, unless shared)"
    )


class AssessmentResults(AssessmentOut):
    """The assessment with every node of its framework, in framework order."""

    framework_version: str
    framework_hash: str | None = Field(description="Hash of the framework it was computed with")
    stale: bool = Field(description="Inputs changed since the last computation")
    nodes: list[ResultNodeOut]


class SummaryPart(Out):
    """One part of the index: a GMSC component, an SPBE domain."""

    id: str
    name: str
    weight: str | None = Field(description="Decimal text")
    value: str | None = Field(description=DECIMAL)


class Ranks(Out):
    national: int | None = Field(description="Rank among all regions; null when unranked")
    of_national: int = Field(description="How many regions are ranked nationally")
    province: int | None = Field(description="Rank within the province; null when unranked")
    of_province: int = Field(description="How many regions of the province are ranked")


class Summary(Out):
    """The figures of a results letter."""

    assessment_id: uuid.UUID
    region: str = Field(description="Kemendagri code")
    framework: str
    period: int
    index: str | None = Field(description=DECIMAL)
    predicate: str | None
    indices: Indices = Field(description="The self-assessed and the verified index, side by side")
    parts: list[SummaryPart]
    rank: Ranks
    previous_index: str | None = Field(description="The previous period's index, if any")
    improvement: str | None = Field(description="index − previous_index, decimal text")
    internal: bool = Field(
        description="An internal evaluation of an agency: unranked (its rank counts are "
        "those of the official ranking), previous_index the agency's own"
    )
    agency: AgencyRef | None


class RankingItem(Out):
    rank: int = Field(description="Competition rank: equal indices share it (1, 2, 2, 4)")
    region: str = Field(description="Kemendagri code")
    name: str
    province_code: str | None
    index: str = Field(description="Decimal text")
    predicate: str | None
    previous_rank: int | None = Field(description="Rank in the previous period, if ranked")
    movement: int | None = Field(description="previous_rank − rank (positive: moved up)")
    previous_index: str | None = Field(description="Index in the previous period, if any")
    improvement: str | None = Field(description="index − previous_index, decimal text")


class Ranking(Out):
    framework: str
    period: int
    province: str | None = Field(description="The province ranked within; null: national")
    items: list[RankingItem]


class TrendPoint(Out):
    period: int
    framework: str = Field(description="The version this period was evaluated on")
    index: str | None = Field(description=DECIMAL)
    predicate: str | None
    improvement: str | None = Field(
        description="Change from the previous listed period on the same version; null at a "
        "change of instrument, where the two figures are not comparable"
    )
    instrument_changed: bool = Field(
        description="This period is evaluated on another version than the previous one listed"
    )


class Trend(Out):
    family: str = Field(description="The instrument")
    framework: str | None = Field(description="The version asked for; null: every version")
    region: str
    instruments: list[str] = Field(
        description="The versions the listed periods were evaluated on, oldest first"
    )
    items: list[TrendPoint] = Field(description="Final results per period, oldest first")


class NodeValue(Out):
    value: str | None = Field(description=DECIMAL)
    predicate: str | None


class ComparedNode(Out):
    id: str
    name: str
    values: dict[str, NodeValue | None] = Field(
        description="Region code → the node's value; null where the region has no result"
    )


class Comparison(Out):
    framework: str
    period: int
    regions: list[str] = Field(description="The compared region codes, as asked")
    nodes: list[ComparedNode]


class Stats(Out):
    mean: str | None = Field(description="Decimal text, rounded as the framework rounds")
    median: str | None = Field(description="Decimal text, rounded as the framework rounds")
    min: str | None
    max: str | None


class PartStats(Out):
    name: str
    mean: str | None = Field(description="Decimal text, rounded as the framework rounds")
    median: str | None = Field(description="Decimal text, rounded as the framework rounds")
    min: str | None
    max: str | None


class Coverage(Out):
    with_results: int = Field(description="Ranked regions (final results)")
    regions: int = Field(description="Kabupaten/kota in scope")
    percent: str = Field(description="with_results of regions, in percent (decimal text)")


class Dashboard(Out):
    framework: str
    period: int
    province: str | None = Field(description="The province; null: national figures")
    coverage: Coverage
    predicates: dict[str, int] = Field(description="Predicate → how many regions have it")
    index: Stats
    parts: dict[str, PartStats] = Field(description="Index part id → its distribution")


class PlanStep(Out):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    node: str = Field(description="The leaf raised, e.g. I42")
    name: str
    from_: str = Field(alias="from", description="Its value now (decimal text)")
    to: str = Field(description="Its value after the steps (decimal text)")
    steps: int = Field(description="Steps taken: levels, or increments of a decimal scale")
    cost: str = Field(description="Their cost (decimal text)")
    contribution: str = Field(
        description="What they add to the unrounded index, rounded as contributions are"
    )


class PlanOption(Out):
    cost: str = Field(description="Total cost of the steps (decimal text)")
    index: str | None = Field(description="The published index after the steps")
    predicate: str | None
    steps: list[PlanStep]


class PlanFigure(Out):
    index: str | None = Field(description=DECIMAL)
    predicate: str | None


class PlanAssumption(Out):
    node: str
    value: str | None = Field(description="The value the plan counts from")
    note: str


class PlanExclusion(Out):
    node: str
    reason: str


class Plan(Out):
    """The cheapest steps on the region's own (assessed) leaves that bring the index to the
    target, from the values that count (verified, else the region's own). When the target is
    out of reach, ``reachable`` is false and the steps are those to the best reachable index."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    assessment: uuid.UUID
    framework: str
    target: str = Field(description="As asked: an index value or a predicate")
    target_index: str = Field(description="The lowest published index that meets the target")
    reachable: bool
    current: PlanFigure = Field(description="The index now (missing leaves as assumed)")
    cost: str = Field(description="Total cost of the steps (decimal text)")
    index: str | None = Field(description="The published index after the steps")
    predicate: str | None
    steps: list[PlanStep]
    alternatives: list[PlanOption] = Field(description="Other plans of the same cost, at most 4")
    increment: str | None = Field(
        description="The step of decimal-scale leaves; null when none is raised"
    )
    assumed: list[PlanAssumption] = Field(
        description="Leaves without a value, counted from their scale's minimum"
    )
    excluded: list[PlanExclusion] = Field(
        description="Leaves the region cannot raise: outside indices, metric-driven, linked"
    )


# The request body of a plan with costs (a read: nothing is stored).
class PlanIn(BaseModel):
    """A plan with costs: the target, and optionally each leaf's cost of one step and the
    step of decimal-scale leaves."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"target": "Memuaskan", "costs": {"I1": "5", "I21": "20"}}]
        },
    )

    target: str = Field(
        min_length=1, max_length=100, description="An index value ('3.50') or a predicate"
    )
    costs: dict[str, Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        max_length=1000,
        description="Leaf id → cost of one step on it (default 1), e.g. effort in days",
    )
    increment: Decimal | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Step of decimal-scale leaves (default and least: one unit of the "
        "framework's precision, 0.01)",
    )
