"""The assessment workflow as one table: every allowed move, who may make it, what it needs.

After h11's ``_state.py``: the moves are data, read by the transition endpoint, by evidence
requests (the one move made by another endpoint) and by the access policy, so no rule about
states is written anywhere else.

    draft → submitted → in_review ⇄ evidence_requested
                        in_review ⇄ verified → published → in_review (a correction)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.models import AssessmentState, Role
from services.scoring.engine import Framework

S = AssessmentState
REGION_OPERATOR, ASSESSOR, ADMIN = Role.REGION_OPERATOR, Role.ASSESSOR, Role.MINISTRY_ADMIN


def initial_state(framework: Framework) -> AssessmentState:
    """Where a new assessment starts: a draft to fill in, or published for a computed view
    (a framework with no entered values has no workflow)."""
    return S.DRAFT if framework.has_assessed_inputs else S.PUBLISHED


@dataclass(frozen=True, slots=True)
class Move:
    roles: frozenset[Role]
    # Made only by asking for evidence (POST .../evidence-requests), never as a bare transition.
    by_evidence_request_only: bool = False
    # A correction of published figures: the reason is audited.
    needs_reason: bool = False


def _move(*roles: Role, by_evidence_request_only: bool = False, needs_reason: bool = False) -> Move:
    return Move(frozenset(roles), by_evidence_request_only, needs_reason)


TRANSITIONS: dict[tuple[AssessmentState, AssessmentState], Move] = {
    (S.DRAFT, S.SUBMITTED): _move(REGION_OPERATOR, ADMIN),
    (S.SUBMITTED, S.IN_REVIEW): _move(ASSESSOR, ADMIN),
    (S.IN_REVIEW, S.EVIDENCE_REQUESTED): _move(ASSESSOR, ADMIN),
    (S.EVIDENCE_REQUESTED, S.EVIDENCE_REQUESTED): _move(
        ASSESSOR, ADMIN, by_evidence_request_only=True
    ),
    (S.EVIDENCE_REQUESTED, S.IN_REVIEW): _move(REGION_OPERATOR, ASSESSOR, ADMIN),
    (S.IN_REVIEW, S.VERIFIED): _move(ASSESSOR, ADMIN),
    (S.VERIFIED, S.IN_REVIEW): _move(ASSESSOR, ADMIN),
    (S.VERIFIED, S.PUBLISHED): _move(ADMIN),
    (S.PUBLISHED, S.IN_REVIEW): _move(ADMIN, needs_reason=True),
}


def roles_moving_to(target: AssessmentState) -> frozenset[Role]:
    """Every role that may move some assessment into ``target``."""
    return frozenset().union(*(move.roles for (_, to), move in TRANSITIONS.items() if to == target))


class Value(StrEnum):
    """The values a node can be given: a leaf's self-assessed value (the region's own) and its
    verified one (the assessor's); an inner node's official value, imported by a
    ministry-admin from a results letter."""

    SELF = "self"
    VERIFIED = "verified"
    OFFICIAL = "official"


# Which value each role enters, and in which states that value is open.
VALUE_OF_ROLE: dict[Role, Value] = {
    REGION_OPERATOR: Value.SELF,
    ASSESSOR: Value.VERIFIED,
    ADMIN: Value.VERIFIED,
}
VALUE_STATES: dict[Value, frozenset[AssessmentState]] = {
    Value.SELF: frozenset({S.DRAFT, S.EVIDENCE_REQUESTED}),
    Value.VERIFIED: frozenset({S.IN_REVIEW}),
}
# The assessor's output per node (evidence, interview, approval, catatan, rekomendasi) is part
# of verifying: written by the roles that verify, in the states where verified values are.
VERIFYING_ROLES: frozenset[Role] = frozenset(
    role for role, value in VALUE_OF_ROLE.items() if value is Value.VERIFIED
)
ASSESSOR_OUTPUT_STATES: frozenset[AssessmentState] = VALUE_STATES[Value.VERIFIED]
