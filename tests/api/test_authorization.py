"""Every write endpoint × every role × own/foreign region (or assigned/unassigned assessor).

The matrix is checked against the app's route table, so a new write endpoint fails this suite
until its row is added here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.service import create_key
from services.kit.settings import Settings
from services.main import create_app
from services.models import Role, WebhookSubscription
from tests.api.matrix import OWN, ROLES, World, make_world

PDF = b"%PDF-1.4\n%%EOF\n"


@pytest.fixture
async def world(session: AsyncSession) -> World:
    return await make_world(session)


Request = tuple[str, str, dict[str, Any]]
Scenario = Callable[[World, str], Awaitable[Request]]


def _is(role: str, *kinds: str) -> bool:
    return role.split(":")[0] in kinds


async def metrics_batch(world: World, role: str) -> Request:
    point = {"region": OWN, "metric": "integrated_apps", "period": "2024-12", "value": 148}
    return "POST", "/v1/metrics:batch", {"json": {"points": [point]}}


async def metrics_import(world: World, role: str) -> Request:
    body = f"region,metric,period,value\n{OWN},integrated_apps,2024-12,148\n"
    return "POST", "/v1/metrics:import", {"content": body, "headers": {"Content-Type": "text/csv"}}


async def evidence(world: World, role: str) -> Request:
    assessment = await world.assessment("draft")
    return (
        "POST",
        "/v1/evidence",
        {
            "data": {"assessment_id": str(assessment.id), "node_ids": "I11"},
            "files": {"file": ("perwali.pdf", PDF, "application/pdf")},
        },
    )


async def recompute_run(world: World, role: str) -> Request:
    return "POST", "/v1/recompute-runs", {"json": {"framework": "spbe-2020"}}


async def open_assessment(world: World, role: str) -> Request:
    return (
        "POST",
        "/v1/assessments",
        {"json": {"region": OWN, "framework": "gmsc-2023", "period": 2024}},
    )


async def inputs(world: World, role: str) -> Request:
    # Each role where its values belong: reviewers during review, regions in the draft.
    state = "in_review" if _is(role, "assessor", "ministry-admin") else "draft"
    assessment = await world.assessment(state)
    return "PUT", f"/v1/assessments/{assessment.id}/inputs", {"json": {"values": {"I1": 3}}}


async def official_results(world: World, role: str) -> Request:
    assessment = await world.assessment("verified")
    body = {"values": {"spbe": "3.08"}, "source": "Surat hasil evaluasi SPBE 2024"}
    return "PUT", f"/v1/assessments/{assessment.id}/official-results", {"json": body}


async def assessor_output(world: World, role: str) -> Request:
    assessment = await world.assessment("in_review")
    body = {"nodes": {"I1": {"approved": True, "catatan": "Perwali sudah ditetapkan"}}}
    return "PUT", f"/v1/assessments/{assessment.id}/assessor-output", {"json": body}


async def plan(world: World, role: str) -> Request:
    # A read with a body (nothing is stored): a key that may see the assessment.
    assessment = await world.assessment("in_review")
    body = {"target": "Baik", "costs": {"I42": "2.5"}}
    return "POST", f"/v1/assessments/{assessment.id}/plan", {"json": body}


async def transitions(world: World, role: str) -> Request:
    # Each role on an edge it may take: a region submits, an assessor starts the review,
    # the ministry publishes.
    state, to = ("draft", "submitted")
    if _is(role, "assessor"):
        state, to = ("submitted", "in_review")
    elif _is(role, "ministry-admin"):
        state, to = ("verified", "published")
    assessment = await world.assessment(state)
    return "POST", f"/v1/assessments/{assessment.id}/transitions", {"json": {"to": to}}


async def assessors(world: World, role: str) -> Request:
    assessment = await world.assessment("submitted")
    key_id = str(world.key_ids["assessor:unassigned"])
    return "POST", f"/v1/assessments/{assessment.id}/assessors", {"json": {"key_id": key_id}}


async def evidence_requests(world: World, role: str) -> Request:
    assessment = await world.assessment("in_review")
    body = {"node_ids": ["I11"], "message": "Lampirkan dokumen arsitektur SPBE"}
    return "POST", f"/v1/assessments/{assessment.id}/evidence-requests", {"json": body}


async def subscribe(world: World, role: str) -> Request:
    body = {"url": "http://93.184.215.14/hook", "events": ["assessment.published"]}
    return "POST", "/v1/webhooks", {"json": body}


async def unsubscribe(world: World, role: str) -> Request:
    subscription = WebhookSubscription(
        url="http://127.0.0.1:9/hook", events=["result.changed"], secret="whsec_AAAA"
    )
    world.session.add(subscription)
    await world.session.commit()
    return "DELETE", f"/v1/webhooks/{subscription.id}", {}


async def revoke_key(world: World, role: str) -> Request:
    key, _ = await create_key(world.session, name="to revoke", role=Role.SUPER_APP, regions=[OWN])
    await world.session.commit()
    return "POST", f"/v1/keys/{key.id}/revoke", {}


async def add_agency(world: World, role: str) -> Request:
    body = {
        "name": "Badan Perencanaan Pembangunan Daerah",
        "short_name": "Bappeda",
        "kind": "badan",
    }
    return "POST", f"/v1/regions/{OWN}/agencies", {"json": body}


async def rename_agency(world: World, role: str) -> Request:
    agency = await world.agency()
    body = {"short_name": "Diskominfostandi"}
    return "PATCH", f"/v1/regions/{OWN}/agencies/{agency.id}", {"json": body}


async def remove_agency(world: World, role: str) -> Request:
    agency = await world.agency()
    return "DELETE", f"/v1/regions/{OWN}/agencies/{agency.id}", {}


async def responsibilities(world: World, role: str) -> Request:
    assessment = await world.assessment("draft")
    agency = await world.agency()
    body = {"nodes": {"I1": str(agency.id), "I2": str(agency.id)}}
    return "PUT", f"/v1/assessments/{assessment.id}/responsibilities", {"json": body}


REGIONAL = ("super-app:own", "super-app:foreign", "region-operator:own", "region-operator:foreign")
WRITERS = {"super-app:own": 200, "region-operator:own": 200, "ministry-admin": 200}
UPLOADERS = {"super-app:own": 201, "region-operator:own": 201, "ministry-admin": 201}
MINISTRY = {"ministry-admin": 200}
# The scenarios' assessments are Kota Bogor's and unpublished: a key that may not see them (of
# another region, an assessor not assigned) gets 404 on a write to them, once its role may make
# that write at all; it learns nothing of the assessment, not even that it exists.
HIDDEN = {"super-app:foreign": 404, "region-operator:foreign": 404, "assessor:unassigned": 404}
# Route → (scenario, the statuses that are not 403: 2xx for the roles that may, 404 where the
# assessment is hidden); every other role gets 403, anonymous 401.
MATRIX: dict[tuple[str, str], tuple[Scenario, dict[str, int]]] = {
    ("POST", "/v1/metrics:batch"): (metrics_batch, WRITERS),
    ("POST", "/v1/metrics:import"): (metrics_import, WRITERS),
    ("POST", "/v1/evidence"): (
        evidence,
        UPLOADERS | {"super-app:foreign": 404, "region-operator:foreign": 404},
    ),
    ("POST", "/v1/recompute-runs"): (recompute_run, {"ministry-admin": 202}),
    ("POST", "/v1/assessments"): (
        open_assessment,
        {"region-operator:own": 201, "ministry-admin": 201},
    ),
    ("PUT", "/v1/assessments/{assessment_id}/inputs"): (
        inputs,
        {
            "region-operator:own": 200,
            "region-operator:foreign": 404,
            "assessor:assigned": 200,
            "assessor:unassigned": 404,
            "ministry-admin": 200,
        },
    ),
    ("PUT", "/v1/assessments/{assessment_id}/official-results"): (official_results, MINISTRY),
    # The assessor's output is part of verifying: the roles that verify, on what they may see.
    ("PUT", "/v1/assessments/{assessment_id}/assessor-output"): (
        assessor_output,
        {"assessor:assigned": 200, "assessor:unassigned": 404, "ministry-admin": 200},
    ),
    ("POST", "/v1/assessments/{assessment_id}/transitions"): (
        transitions,
        HIDDEN | {"region-operator:own": 200, "assessor:assigned": 200, "ministry-admin": 200},
    ),
    ("POST", "/v1/assessments/{assessment_id}/assessors"): (assessors, {"ministry-admin": 201}),
    ("POST", "/v1/assessments/{assessment_id}/plan"): (
        plan,
        HIDDEN
        | {
            "super-app:own": 200,
            "region-operator:own": 200,
            "assessor:assigned": 200,
            "ministry-admin": 200,
        },
    ),
    ("POST", "/v1/assessments/{assessment_id}/evidence-requests"): (
        evidence_requests,
        {"assessor:assigned": 201, "assessor:unassigned": 404, "ministry-admin": 201},
    ),
    ("POST", "/v1/keys/{key_id}/revoke"): (revoke_key, MINISTRY),
    # A region's agencies (OPD) and who answers for what are its operators' to manage; to a
    # key of another region they do not exist.
    ("POST", "/v1/regions/{code}/agencies"): (
        add_agency,
        {"region-operator:own": 201, "region-operator:foreign": 404},
    ),
    ("PATCH", "/v1/regions/{code}/agencies/{agency_id}"): (
        rename_agency,
        {"region-operator:own": 200, "region-operator:foreign": 404},
    ),
    ("DELETE", "/v1/regions/{code}/agencies/{agency_id}"): (
        remove_agency,
        {"region-operator:own": 204, "region-operator:foreign": 404},
    ),
    ("PUT", "/v1/assessments/{assessment_id}/responsibilities"): (
        responsibilities,
        {"region-operator:own": 200, "region-operator:foreign": 404},
    ),
    # A region's keys subscribe to their own regions' events; the ministry's subscription is
    # not theirs to stop (404: they cannot see it).
    ("POST", "/v1/webhooks"): (
        subscribe,
        {**{role: 201 for role in REGIONAL}, "ministry-admin": 201},
    ),
    ("DELETE", "/v1/webhooks/{subscription_id}"): (
        unsubscribe,
        {**{role: 404 for role in REGIONAL}, "ministry-admin": 204},
    ),
}


def test_every_write_route_is_in_the_matrix(settings: Settings) -> None:
    # The OpenAPI document is the public route table: every endpoint the app serves.
    paths = create_app(settings).openapi()["paths"]
    writes = {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method in {"post", "put", "patch", "delete"}
    }
    assert writes == set(MATRIX), "add the new write endpoint to MATRIX"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda route: f"{route[0]} {route[1]}")
async def test_authorization(
    client: httpx.AsyncClient, world: World, route: tuple[str, str], role: str
) -> None:
    scenario, allowed = MATRIX[route]
    method, url, kwargs = await scenario(world, role)
    headers = {**kwargs.pop("headers", {}), **world.headers[role]}
    response = await client.request(method, url, headers=headers, **kwargs)
    expected = 401 if role == "anonymous" else allowed.get(role, 403)
    assert response.status_code == expected, response.text
    if expected in (401, 403, 404):
        assert response.headers["content-type"] == "application/problem+json"
