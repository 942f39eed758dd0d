"""All tables, on one metadata and one Alembic history."""

from services.models.access import ApiKey, Person, Role
from services.models.agency import Agency, AgencyKind, NodeResponsibility
from services.models.assessment import (
    Assessment,
    AssessmentAssignment,
    AssessmentInput,
    AssessmentState,
    AssessorOutput,
    EvidenceRequest,
)
from services.models.audit import AuditEvent
from services.models.base import Base
from services.models.evidence import EvidenceItem, EvidenceObject, EvidenceRevision
from services.models.idempotency import IdempotencyRecord
from services.models.metric import MetricPoint
from services.models.recompute import RecomputeRequest, RecomputeRun
from services.models.region import Region, RegionKind
from services.models.result import ResultNode, ResultState
from services.models.webhook import WebhookDelivery, WebhookSubscription

__all__ = [
    "Agency",
    "AgencyKind",
    "ApiKey",
    "Assessment",
    "AssessmentAssignment",
    "AssessmentInput",
    "AssessmentState",
    "AssessorOutput",
    "AuditEvent",
    "Base",
    "EvidenceItem",
    "EvidenceObject",
    "EvidenceRequest",
    "EvidenceRevision",
    "IdempotencyRecord",
    "MetricPoint",
    "NodeResponsibility",
    "Person",
    "RecomputeRequest",
    "RecomputeRun",
    "Region",
    "RegionKind",
    "ResultNode",
    "ResultState",
    "Role",
    "WebhookDelivery",
    "WebhookSubscription",
]
