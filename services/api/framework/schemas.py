"""What the framework reads answer: a framework's metadata and its full node tree.

Numbers from the framework files (weights, scale ends, band limits, multipliers) are short
decimal text ("16.5", "100", "0.333333"), never floats.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.kit.schemas import Page
from services.scoring.engine.model import Aggregation, InputKind, Status
from services.scoring.engine.numbers import RoundingMode

NUMBER = "Decimal text, e.g. '16.5'"


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class FrameworkScale(Out):
    """The range a node's value lives in."""

    min: str = Field(description=NUMBER)
    max: str = Field(description=NUMBER)
    integer: bool = Field(description="Whole numbers only (maturity levels)")
    labels: dict[str, str] = Field(description="Level → its official label, e.g. '5': 'Optimum'")
    unit: str | None


class FrameworkBand(Out):
    """from ≤ value < to (to null: up to the scale's end, inclusive)."""

    model_config = ConfigDict(
        frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    predicate: str | None = Field(description="The predicate of values in the band")
    level: str | None = Field(description="The level values in the band are given (metric bands)")
    from_: str = Field(alias="from", description=NUMBER)
    to: str | None = Field(description="Decimal text; null: up to the scale's end")


class FrameworkMetric(Out):
    """How a metric-driven leaf gets its value from pushed metrics."""

    keys: list[str] = Field(description="The metric keys: one value, or numerator and denominator")
    multiplier: str = Field(description=NUMBER)
    clamp: bool = Field(description="Capped at the node's scale")
    bands: list[FrameworkBand] = Field(description="Banded into a level, when given")


class FrameworkLink(Out):
    """A leaf whose value is another framework's node for the same region and period."""

    framework: str
    node: str
    scale: FrameworkScale = Field(description="The source node's scale, rescaled onto this node's")


class FrameworkOutside(Out):
    """A leaf scored by another agency's index: an assessor or ministry enters its value."""

    source: str = Field(description="The outside instrument and its agency")
    absent_value: str | None = Field(
        description="Decimal text counted while no value is entered (IPD: 1); null: none"
    )


class FrameworkPeriods(Out):
    """The evaluation periods (years) a version is in force for, ends inclusive."""

    model_config = ConfigDict(
        frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    from_: int | None = Field(alias="from", description="First period; null: no start")
    to: int | None = Field(description="Last period; null: still in force")


class FrameworkNode(Out):
    id: str
    name: str = Field(description="The official name")
    description: str | None
    weight: str = Field(description=NUMBER)
    scale: FrameworkScale | None
    required: bool
    aggregation: Aggregation | None = Field(description="How an inner node combines its children")
    input: InputKind | None = Field(description="How a leaf gets its value")
    items: bool = Field(description="An assessed leaf taking a list (programme scores)")
    metric: FrameworkMetric | None
    links: list[FrameworkLink] = Field(
        description="A linked leaf's sources: one per version of an instrument, the one in "
        "force for the period counts"
    )
    outside: FrameworkOutside | None
    predicates: list[FrameworkBand]
    children: list[FrameworkNode]


class FrameworkSummary(Out):
    id: str = Field(examples=["spbe-2020"])
    name: str
    version: str
    family: str = Field(
        description="The instrument this is a version of", examples=["e-government"]
    )
    in_force: FrameworkPeriods = Field(description="The periods this version evaluates")
    status: Status = Field(
        description="official: as its regulation sets it; provisional: some figures not yet "
        "confirmed (status_note says which); cerdas: an index of Cerdas's own, not official"
    )
    status_note: str | None = Field(description="What is provisional, or why it is not official")
    source: str | None = Field(description="The regulation or methodology it follows")
    description: str | None
    index_node: str = Field(description="The id of the index's node (the first tree's root)")
    precision: int = Field(description="Decimal places of values")
    rounding: RoundingMode
    content_hash: str = Field(description="Hash of the framework file's content")


class FrameworkPage(Page[FrameworkSummary]):
    """Every version of every instrument, on one page (``next_cursor`` null)."""


class FrameworkOut(FrameworkSummary):
    trees: list[FrameworkNode] = Field(
        description="The index tree first; further roots are views reported beside it"
    )
