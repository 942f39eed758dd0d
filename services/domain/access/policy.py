"""The access policy: what each role may do, and which assessments (and everything attached to
them: evidence, requests, results, exports) a caller may see or act on.

Every endpoint asks here; no role list stands anywhere else. Writes by a role that may not make
them are 403; an assessment the caller may not see is 404, as if it did not exist.

Internal assessments (an agency's, an OPD of the region, evaluated on an instrument inside the
region) are the region's own business: only the region's keys see them (not the ministry, not
assessors, not the public, not other regions, whatever their state), and the region's team does
the whole workflow on them, its operators acting as the internal assessors (``INTERNAL``).
Agencies, and which agency answers for which indicator, are seen inside the region only too.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Principal, Visibility
from services.domain.assessment import repository as assessments
from services.domain.assessment.states import (
    VALUE_OF_ROLE,
    VALUE_STATES,
    VERIFYING_ROLES,
    Value,
    roles_moving_to,
)
from services.kit.errors import Forbidden, NotFound
from services.models import Assessment, AssessmentState, Role

NATIONAL = frozenset({Role.MINISTRY_ADMIN})
# Keys bound to regions: they act for those regions only.
REGIONAL = frozenset({Role.SUPER_APP, Role.REGION_OPERATOR})


class Action(StrEnum):
    """What a caller does, as the 403 message says it."""

    OPEN_ASSESSMENT = "open assessments"
    ENTER_VALUES = "enter assessment values"
    ASSIGN_ASSESSORS = "assign assessors"
    REQUEST_EVIDENCE = "request evidence"
    UPLOAD_EVIDENCE = "upload evidence"
    PUSH_METRICS = "push metrics"
    START_RECOMPUTE_RUN = "start recompute runs"
    MANAGE_WEBHOOKS = "manage webhook subscriptions"
    READ_AUDIT = "read the audit trail"
    READ_METRICS = "read metric points"
    READ_JOBS = "follow background jobs"
    MANAGE_KEYS = "manage API keys"
    IMPORT_OFFICIAL_RESULTS = "import official results"
    RECORD_ASSESSOR_OUTPUT = "record assessor output"
    MANAGE_AGENCIES = "manage agencies (OPD) and who answers for which indicator"


ALLOWED: dict[Action, frozenset[Role]] = {
    Action.OPEN_ASSESSMENT: frozenset({Role.REGION_OPERATOR, Role.MINISTRY_ADMIN}),
    Action.ENTER_VALUES: frozenset(VALUE_OF_ROLE),
    Action.ASSIGN_ASSESSORS: NATIONAL,
    Action.REQUEST_EVIDENCE: roles_moving_to(AssessmentState.EVIDENCE_REQUESTED),
    Action.UPLOAD_EVIDENCE: REGIONAL | NATIONAL,
    Action.PUSH_METRICS: REGIONAL | NATIONAL,
    Action.START_RECOMPUTE_RUN: NATIONAL,
    # A region's keys subscribe to their own regions' events (services/domain/webhook).
    Action.MANAGE_WEBHOOKS: REGIONAL | NATIONAL,
    Action.READ_AUDIT: NATIONAL,
    # Any key reads; which points (metric_regions) and which jobs (may_follow_job) it sees is
    # decided below.
    Action.READ_METRICS: frozenset(Role),
    Action.READ_JOBS: frozenset(Role),
    Action.MANAGE_KEYS: NATIONAL,
    # The published figures of a results letter: only the ministry enters an inner node.
    Action.IMPORT_OFFICIAL_RESULTS: NATIONAL,
    # Evidence, interview, approval, catatan and rekomendasi per node: part of verifying.
    Action.RECORD_ASSESSOR_OUTPUT: VERIFYING_ROLES,
    # The region's own organisation: its operators, inside their region only.
    Action.MANAGE_AGENCIES: frozenset({Role.REGION_OPERATOR}),
}
# On an internal assessment of an agency the region is its own assessor: its operators open it,
# enter its values (their own, then the verified ones in review), ask for evidence, record the
# output and make every workflow move; its keys upload evidence. No one outside the region
# sees it, so no other role acts on it.
INTERNAL_TEAM = frozenset({Role.REGION_OPERATOR})
INTERNAL: dict[Action, frozenset[Role]] = {
    Action.OPEN_ASSESSMENT: INTERNAL_TEAM,
    Action.ENTER_VALUES: INTERNAL_TEAM,
    Action.REQUEST_EVIDENCE: INTERNAL_TEAM,
    Action.RECORD_ASSESSOR_OUTPUT: INTERNAL_TEAM,
    Action.UPLOAD_EVIDENCE: REGIONAL,
}


# What only a key does, never a person: webhook subscriptions belong to the integration
# (the key) that receives them, are listed by it and stop with it.
KEYS_ONLY = frozenset({Action.MANAGE_WEBHOOKS})


def require(principal: Principal, action: Action) -> None:
    """403 unless the caller's role may do ``action`` at all (and, for what only keys do, the
    caller is a key)."""
    allowed = ALLOWED[action]
    if action in KEYS_ONLY and principal.person is not None:
        raise Forbidden(f"People do not {action}: an integration does, with an API key of its own.")
    if principal.role not in allowed:
        raise Forbidden(
            f"The role '{principal.role}' may not {action} (allowed: {', '.join(sorted(allowed))})."
        )


def may_ever(principal: Principal, action: Action) -> bool:
    """Whether the caller's role may do ``action`` on some assessment, official or internal:
    the check made before an assessment is loaded (or a body received)."""
    return principal.role in ALLOWED[action] | INTERNAL.get(action, frozenset())


def require_ever(principal: Principal, action: Action) -> None:
    """403 unless the caller's role may do ``action`` on some assessment, official or
    internal (the message names the official rule)."""
    if not may_ever(principal, action):
        require(principal, action)


async def require_on(
    session: AsyncSession, principal: Principal, action: Action, assessment: Assessment
) -> None:
    """The checks of ``action`` on ``assessment``: on an official one the role (403), then
    whether the caller sees it (404) and acts for it (403); on an internal one whether the
    caller sees it first (404: outside the region it does not exist), then the role of the
    region's team (403)."""
    if assessment.internal:
        await require_visible(session, principal, assessment)
        allowed = INTERNAL.get(action, frozenset())
        if principal.role not in allowed:
            raise Forbidden(
                f"The role '{principal.role}' may not {action} on an internal assessment "
                f"(allowed: {', '.join(sorted(allowed)) or 'none'})."
            )
    else:
        require(principal, action)
        await require_visible(session, principal, assessment)
    await require_scope(session, principal, assessment)


def value_entered(principal: Principal, assessment: Assessment) -> Value:
    """Which value the caller enters on ``assessment``: its role's; on an internal assessment
    the region's operators, its internal assessors, enter the verified values in review."""
    if (
        assessment.internal
        and principal.role in INTERNAL_TEAM
        and assessment.state in VALUE_STATES[Value.VERIFIED]
    ):
        return Value.VERIFIED
    return VALUE_OF_ROLE[principal.role]


def move_roles(roles: frozenset[Role], assessment: Assessment) -> frozenset[Role]:
    """Who makes a workflow move on ``assessment``: the transition table's roles, or on an
    internal assessment the region's team, which is its own assessor and publisher."""
    return INTERNAL_TEAM if assessment.internal else roles


def require_move(principal: Principal, roles: frozenset[Role], source: str, target: str) -> None:
    """403 unless the caller's role may make this workflow move (the roles come from the
    transition table, through :func:`move_roles`)."""
    if principal.role not in roles:
        raise Forbidden(
            f"The role '{principal.role}' may not move an assessment from {source} to {target}."
        )


def acts_for_region(principal: Principal, region_code: str) -> bool:
    if principal.role in NATIONAL:
        return True
    return principal.role in REGIONAL and region_code in principal.regions


def require_region(
    principal: Principal, region_code: str, doing: str, *, outcome: str = ""
) -> None:
    """403 unless the caller acts for ``region_code`` (national roles act for every region);
    ``outcome`` tells the caller what became of the rest of its request."""
    if not acts_for_region(principal, region_code):
        raise Forbidden(
            f"The key {principal.name!r} ({principal.role}) may not {doing} for region "
            f"{region_code!r}{'; ' + outcome if outcome else ''}."
        )


async def require_scope(
    session: AsyncSession, principal: Principal, assessment: Assessment
) -> None:
    """403 unless the caller may act on this assessment: a ministry-admin on any, an assessor
    on those assigned to it, a regional key on its regions'."""
    if principal.role in NATIONAL:
        return
    if principal.role == Role.ASSESSOR:
        if not await is_assigned(session, principal, assessment.id):
            who = "person" if principal.person else "key"
            raise Forbidden(f"This assessor {who} is not assigned to the assessment.")
    else:
        require_region(principal, assessment.region_code, "act")


async def is_assigned(
    session: AsyncSession, principal: Principal, assessment_id: uuid.UUID
) -> bool:
    """Whether the caller (a key or a person) is assigned to the assessment."""
    if principal.person is not None:
        return await assessments.is_assigned(session, assessment_id, person_id=principal.person.id)
    return principal.key_id is not None and await assessments.is_assigned(
        session, assessment_id, principal.key_id
    )


def may_follow_job(principal: Principal, started_by: uuid.UUID | None) -> bool:
    """A background job is visible to the key that started it and to a ministry-admin."""
    return principal.role in NATIONAL or (
        principal.key_id is not None and principal.key_id == started_by
    )


def metric_regions(principal: Principal) -> frozenset[str] | None:
    """Whose raw metric points the caller reads: its regions', or every region's (None) for a
    ministry-admin and for assessors, who review any region's figures."""
    if principal.role in NATIONAL or principal.role == Role.ASSESSOR:
        return None
    return principal.regions


def visibility(principal: Principal | None) -> Visibility:
    """Published official assessments for everyone; a regional key also its regions' (and
    their internal ones), an assessor its assignments', a ministry-admin every official one.
    Internal assessments are seen by the region's keys only."""
    if principal is None:
        return Visibility()
    if principal.role in NATIONAL:
        return Visibility(everything=True)
    if principal.role == Role.ASSESSOR:
        if principal.person is not None:
            return Visibility(assigned_person=principal.person.id)
        return Visibility(assigned_to=principal.key_id)
    regions = principal.regions if principal.role in REGIONAL else frozenset()
    return Visibility(regions=regions, internal=regions)


def inside_region(principal: Principal | None, region_code: str) -> bool:
    """Whether the caller is one of the region's own keys: who sees its agencies, which agency
    answers for which indicator, and its internal assessments."""
    return principal is not None and principal.role in REGIONAL and region_code in principal.regions


def require_inside_region(principal: Principal | None, region_code: str, what: str) -> None:
    """404 (``what`` does not exist) unless the caller is one of the region's own keys."""
    if not inside_region(principal, region_code):
        raise NotFound(what)


def require_manage_agencies(principal: Principal, region_code: str, what: str) -> None:
    """403 for a role that may not manage agencies; 404 (``what`` does not exist) for a key
    outside the region."""
    require(principal, Action.MANAGE_AGENCIES)
    require_inside_region(principal, region_code, what)


def sees_unpublished_figures(principal: Principal | None) -> bool:
    """Rankings and other figures across regions count published results only, except for a
    ministry-admin. Whoever asks, they count official assessments only: an internal one is
    never in them (services/api/result/repository.py)."""
    return principal is not None and principal.role in NATIONAL


def sees_assessor_output(
    principal: Principal | None, assessment: Assessment, *, shared_with_region: bool
) -> bool:
    """Whether a caller who may see ``assessment`` reads the assessor's output on one of its
    nodes: everyone once the assessment is published; before that the assessors and the
    ministry, and the region's own keys only for a node the assessor shared with the region.
    Every read of assessor output (results, exports) asks here."""
    if assessment.state == AssessmentState.PUBLISHED:
        return True
    if principal is None:
        return False
    if assessment.internal:  # the region is its own assessor
        return inside_region(principal, assessment.region_code)
    if principal.role in NATIONAL or principal.role == Role.ASSESSOR:
        return True
    return shared_with_region and acts_for_region(principal, assessment.region_code)


async def require_visible(
    session: AsyncSession, principal: Principal, assessment: Assessment
) -> None:
    """404 unless the caller may see ``assessment``, whatever it came to do: a write on an
    assessment the caller may not read learns nothing about it (not even its state)."""
    seen = visibility(principal)
    if assessment.internal:
        if assessment.region_code in seen.internal:
            return
        raise NotFound(f"No assessment {assessment.id}.")
    if (
        seen.everything
        or assessment.state == AssessmentState.PUBLISHED
        or assessment.region_code in seen.regions
    ):
        return
    if (
        seen.assigned_to is not None or seen.assigned_person is not None
    ) and await assessments.is_assigned(
        session, assessment.id, seen.assigned_to, person_id=seen.assigned_person
    ):
        return
    raise NotFound(f"No assessment {assessment.id}.")


async def visible_assessment(
    session: AsyncSession, principal: Principal | None, assessment_id: uuid.UUID
) -> Assessment:
    """The assessment if the caller may see it; otherwise 404, as if it did not exist."""
    found = await assessments.get(session, assessment_id, visibility(principal))
    if found is None:
        raise NotFound(f"No assessment {assessment_id}.")
    return found
