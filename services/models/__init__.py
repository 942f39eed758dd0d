"""All tables, on one metadata and one Alembic history."""

from services.models.access import ROLES, ApiKey
from services.models.assessment import (
    ASSESSMENT_STATES,
    Assessment,
    AssessmentInput,
    RecomputeRequest,
    RecomputeRun,
    ResultNode,
    ResultState,
)
from services.models.audit import AuditEvent
from services.models.base import Base
from services.models.evidence import EvidenceItem, EvidenceObject, EvidenceRevision
from services.models.metric import IdempotencyRecord, MetricPoint
from services.models.region import REGION_KINDS, Region

__all__ = [
    "ASSESSMENT_STATES",
    "REGION_KINDS",
    "ROLES",
    "ApiKey",
    "Assessment",
    "AssessmentInput",
    "AuditEvent",
    "Base",
    "EvidenceItem",
    "EvidenceObject",
    "EvidenceRevision",
    "IdempotencyRecord",
    "MetricPoint",
    "RecomputeRequest",
    "RecomputeRun",
    "Region",
    "ResultNode",
    "ResultState",
]
