from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.api.result.schemas import AssessmentOut, AssessorOutputOut
from services.domain.assessment.states import Value
from services.kit.schemas import Page, Timestamp
from services.models import AssessmentState


class AssessmentIn(BaseModel):
    """The instrument by ``family`` (the version in force for the period is taken), or an
    explicit ``framework`` version, which must be in force for the period."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"region": "32.71", "family": "e-government", "period": 2024},
                {"region": "32.71", "framework": "spbe-2020", "period": 2024},
            ]
        }
    )

    region: str = Field(examples=["32.71"])
    family: str | None = Field(
        default=None,
        max_length=64,
        description="The instrument, e.g. e-government: the version in force for the period",
        examples=["e-government"],
    )
    framework: str | None = Field(
        default=None,
        max_length=64,
        description="An explicit framework version; it must be in force for the period",
        examples=["spbe-2020"],
    )
    period: int = Field(ge=2000, le=2100, examples=[2024])
    stage: str = Field(default="final", max_length=16)
    agency: uuid.UUID | None = Field(
        default=None,
        description="An agency (OPD) of the region: open an internal assessment of it beside "
        "the official one, seen inside the region only and never in official figures",
    )

    @model_validator(mode="after")
    def _names_an_instrument(self) -> AssessmentIn:
        if self.family is None and self.framework is None:
            raise ValueError("give the instrument's 'family' (or a 'framework' version)")
        return self


class OutsideSourceIn(BaseModel):
    """Where an outside index's value was taken from, and the date of that figure."""

    reference: str = Field(
        min_length=1,
        max_length=300,
        description="The publication or system the value was read from",
        examples=["Skor Satu Data Indonesia 2025, Bappenas"],
    )
    as_of: date = Field(description="The date of the figure", examples=["2026-05-12"])


class InputsIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"values": {"I1": 3, "I21": 4}, "note": "Bukti manajemen risiko"}]
        }
    )

    values: dict[str, Any] = Field(
        min_length=1,
        description="Node id → value (a decimal, a list for programme scores, null to clear). "
        "Region operators write the self-assessed value; assessors the verified one.",
        examples=[{"I1": 3, "I2": 4}],
    )
    sources: dict[str, OutsideSourceIn] = Field(
        default_factory=dict,
        description="For each value of a leaf scored from an outside index (IPD's I5, I6, I7, "
        "I18): where it was taken from and its date. Required with such a value.",
        examples=[{"I5": {"reference": "Skor SDI 2025, Bappenas", "as_of": "2026-05-12"}}],
    )
    note: str | None = Field(default=None, max_length=2000)


class OfficialResultsIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"values": {"spbe": "3.08"}, "source": "Surat KemenPANRB B/123/2024"}]
        }
    )

    values: dict[str, Any] = Field(
        min_length=1,
        description="Inner node id → its published value (a decimal; null to clear)",
        examples=[{"D1": "3.10", "spbe": "3.08"}],
    )
    source: str = Field(
        min_length=1,
        max_length=300,
        description="Where the figures were published, e.g. the results letter's number",
        examples=["Surat Menteri PANRB B/123/M.TI.01/2025"],
    )


class AssessorOutputIn(BaseModel):
    """What the assessor records on one node. A field left out keeps its stored value; null
    clears it (a judgement back to not judged, sharing back to not shared)."""

    model_config = ConfigDict(extra="forbid")

    evidence_uploaded: bool | None = Field(default=None, description="Evidence was uploaded")
    interview_confirmed: bool | None = Field(
        default=None, description="Confirmed in the interview (wawancara)"
    )
    approved: bool | None = Field(default=None, description="Approved by the assessor")
    catatan: str | None = Field(default=None, max_length=4000, description="A note")
    rekomendasi: str | None = Field(default=None, max_length=4000, description="A recommendation")
    shared_with_region: bool | None = Field(
        default=None,
        description="Let the region read it before the assessment is published (default false)",
    )


class AssessorOutputsIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "nodes": {
                        "I1": {
                            "evidence_uploaded": True,
                            "interview_confirmed": True,
                            "approved": False,
                            "catatan": "Perwali Arsitektur SPBE masih draf",
                            "rekomendasi": "Tetapkan Perwali Arsitektur SPBE",
                            "shared_with_region": False,
                        }
                    }
                }
            ]
        }
    )

    nodes: dict[str, AssessorOutputIn] = Field(
        min_length=1,
        max_length=500,
        description="Node id → the fields to set on it",
        examples=[
            {
                "I1": {
                    "evidence_uploaded": True,
                    "interview_confirmed": True,
                    "approved": False,
                    "catatan": "Perwali Arsitektur SPBE belum ditetapkan",
                    "rekomendasi": "Tetapkan Perwali Arsitektur SPBE",
                }
            }
        ],
    )


class AssessorOutputsOut(BaseModel):
    """The assessor's output on the nodes written, as now stored."""

    assessment_id: uuid.UUID
    nodes: dict[str, AssessorOutputOut]


class TransitionIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"to": "submitted"}, {"to": "in_review", "reason": "Koreksi nilai I21"}]
        }
    )

    to: AssessmentState
    reason: str | None = Field(
        default=None, max_length=2000, description="Required to reopen a published assessment"
    )


class AssignIn(BaseModel):
    """An assessor's key (``key_id``), or a person by their SSO subject identifier (``sub``,
    with ``issuer`` when several are trusted): exactly one of the two."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"key_id": "0b6f2a52-8a4e-4d43-9b8e-5f0e1d2c3b4a"},
                {"sub": "f:6c1d9e:siti.rahma"},
            ]
        }
    )

    key_id: uuid.UUID | None = None
    sub: str | None = Field(default=None, min_length=1, max_length=255)
    issuer: str | None = Field(
        default=None, max_length=500, description="The person's SSO; needed if several"
    )

    @model_validator(mode="after")
    def _one_assessor(self) -> AssignIn:
        if (self.key_id is None) == (self.sub is None):
            raise ValueError("give either key_id (an assessor key) or sub (a person)")
        if self.issuer is not None and self.sub is None:
            raise ValueError("issuer goes with sub")
        return self


class AssignmentOut(BaseModel):
    assessment_id: uuid.UUID
    key_id: uuid.UUID | None = Field(default=None, description="The assessor key assigned")
    person_id: uuid.UUID | None = Field(default=None, description="The person assigned")
    issuer: str | None = None
    sub: str | None = None


class EvidenceRequestIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "node_ids": ["I11", "I12"],
                    "message": "Lampirkan Perwali Arsitektur SPBE",
                    "due_date": "2024-09-30",
                }
            ]
        }
    )

    node_ids: list[str] = Field(min_length=1, max_length=200, examples=[["I11", "I12"]])
    message: str = Field(min_length=1, max_length=4000)
    due_date: date | None = None


class ActorOut(BaseModel):
    """Who did something: an API key (its name) or a person (name, SSO subject, NIP)."""

    kind: Literal["key", "person"]
    id: uuid.UUID
    name: str | None = Field(examples=["Siti Rahma"])
    sub: str | None = Field(default=None, description="A person's SSO subject identifier")
    nip: str | None = Field(default=None, description="A person's NIP, when known")


class EvidenceRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    assessment_id: uuid.UUID
    node_ids: list[str]
    message: str
    due_date: date | None
    created_at: Timestamp
    answered_at: Timestamp | None
    answered_by_item: uuid.UUID | None = Field(description="The evidence item that answered it")
    # Not read from the row (whose requested_by is a key id): filled in by the router.
    requested_by: ActorOut | None = Field(
        default=None,
        validation_alias="requester",
        description="The assessor (key or person) who asked; null if since deleted",
    )


class EvidenceRequestPage(Page[EvidenceRequestOut]):
    """An assessment's evidence requests, all on one page (``next_cursor`` null)."""


class InputsOut(AssessmentOut):
    """The assessment written to, and what was written."""

    written: Value = Field(description="Which value was written: the region's own or verified")
    nodes: list[str]
