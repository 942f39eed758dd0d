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
from services.models.workflow import (
    AssessmentAssignment,
    EvidenceRequest,
    WebhookDelivery,
    WebhookSubscription,
)

__all__ = [
    "ASSESSMENT_STATES",
    "REGION_KINDS",
    "ROLES",
    "ApiKey",
    "Assessment",
    "AssessmentAssignment",
    "AssessmentInput",
    "AuditEvent",
    "Base",
    "EvidenceItem",
    "EvidenceObject",
    "EvidenceRequest",
    "EvidenceRevision",
    "IdempotencyRecord",
    "MetricPoint",
    "RecomputeRequest",
    "RecomputeRun",
    "Region",
    "ResultNode",
    "ResultState",
    "WebhookDelivery",
    "WebhookSubscription",
]
