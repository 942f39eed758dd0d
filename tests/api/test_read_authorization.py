"""Every read endpoint × every role × own/foreign region × published/unpublished.

The matrix is checked against the app's route table, so a new GET endpoint fails this suite
until its row is added here. Each cell checks the status, and where a list can leak, what it
lists: an assessment a caller may not see is 404 wherever it is attached, and absent from
every list and figure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Context, Principal
from services.domain.recompute.service import create_run
from services.kit.settings import Settings
from services.main import create_app
from services.models import (
    AssessmentState,
    EvidenceRequest,
    MetricPoint,
    ResultNode,
    ResultState,
    Role,
    WebhookSubscription,
)
from tests.api.matrix import FOREIGN, OWN, ROLES, World, make_world

PDF = b"%PDF-1.4\n%%EOF\n"
# Who may see Kota Bogor's assessment while it is unpublished (once published: everyone).
INSIDERS = {"super-app:own", "region-operator:own", "assessor:assigned", "ministry-admin"}
# Whose raw metric points of Kota Bogor a caller reads: its own region, assessors, the ministry.
METRIC_READERS = {
    "super-app:own",
    "region-operator:own",
    "assessor:assigned",
    "assessor:unassigned",
    "ministry-admin",
}


# The region's own keys: they alone see its agencies (OPD), who answers for what, and its
# internal assessments.
OWN_KEYS = {"super-app:own", "region-operator:own"}
# An internal assessment of a Kota Bogor agency, scored higher than any official figure: it
# must show nowhere but in the region's own views.
INTERNAL_INDEX = "4.97"


@dataclass
class Scene:
    world: World
    published: bool
    assessment: uuid.UUID
    item: uuid.UUID
    job: uuid.UUID
    subscription: uuid.UUID
    internal: uuid.UUID


@pytest.fixture(params=[False, True], ids=["unpublished", "published"])
async def scene(
    request: pytest.FixtureRequest, session: AsyncSession, client: httpx.AsyncClient
) -> Scene:
    world = await make_world(session)
    assessment = await world.assessment("in_review")
    admin = world.headers["ministry-admin"]
    uploaded = await client.post(
        "/v1/evidence",
        headers=admin,
        data={"assessment_id": str(assessment.id), "node_ids": "I11"},
        files={"file": ("perwali.pdf", PDF, "application/pdf")},
    )
    assert uploaded.status_code == 201, uploaded.text
    now = datetime.now(UTC)
    session.add_all(
        [
            ResultState(
                assessment_id=assessment.id,
                input_revision=0,
                framework_hash="test",
                index_value=Decimal("3.50"),
                predicate="Sangat Baik",
                complete=False,
                computed_at=now,
            ),
            ResultNode(
                assessment_id=assessment.id,
                node_id="spbe",
                value=Decimal("3.50"),
                source="computed",
                detail={},
                input_revision=0,
                computed_at=now,
            ),
            EvidenceRequest(
                assessment_id=assessment.id,
                node_ids=["I11"],
                message="Lampirkan dokumen arsitektur SPBE",
                requested_by=world.key_ids["ministry-admin"],
            ),
            MetricPoint(
                region_code=OWN,
                metric="integrated_apps",
                period="2024-12",
                period_start=datetime(2024, 12, 1).date(),
                year=2024,
                dimensions={},
                dimension_key="",
                value=Decimal(148),
            ),
        ]
    )
    subscription = WebhookSubscription(
        url="https://sistem.kementerian.go.id/hook", events=["result.changed"], secret="whsec_AAAA"
    )
    session.add(subscription)
    ministry = Principal(world.key_ids["ministry-admin"], "ministry-admin", Role.MINISTRY_ADMIN)
    run = await create_run(
        session,
        Context(ministry, "read-matrix"),
        framework_id="spbe-2020",
        period=None,
        region_code=None,
        queue=None,
    )
    agency = await world.agency()
    internal = await world.internal("published" if request.param else "in_review", agency)
    session.add_all(
        [
            ResultState(
                assessment_id=internal.id,
                input_revision=0,
                framework_hash="test",
                index_value=Decimal(INTERNAL_INDEX),
                predicate="Memuaskan",
                complete=False,
                computed_at=now,
            ),
            ResultNode(
                assessment_id=internal.id,
                node_id="spbe",
                value=Decimal(INTERNAL_INDEX),
                source="computed",
                detail={},
                input_revision=0,
                computed_at=now,
            ),
        ]
    )
    if request.param:
        assessment.state = AssessmentState.PUBLISHED
    await session.commit()
    return Scene(
        world,
        request.param,
        assessment.id,
        uuid.UUID(uploaded.json()["id"]),
        run.id,
        subscription.id,
        internal.id,
    )


def sees(scene: Scene, role: str) -> bool:
    return scene.published or role in INSIDERS


def public(scene: Scene, role: str) -> int:
    """A read anyone may make, key or none."""
    return 200


def attached(scene: Scene, role: str) -> int:
    """A read of the assessment or of what is attached to it, key optional."""
    return 200 if sees(scene, role) else 404


def attached_with_key(scene: Scene, role: str) -> int:
    """A read of what is attached to the assessment, with a key."""
    if role == "anonymous":
        return 401
    return attached(scene, role)


def any_key(scene: Scene, role: str) -> int:
    return 401 if role == "anonymous" else 200


def ministry(scene: Scene, role: str) -> int:
    return {"anonymous": 401, "ministry-admin": 200}.get(role, 403)


def subscribers(scene: Scene, role: str) -> int:
    """Subscriptions: the ministry's and the regions' keys list theirs; assessors have none."""
    if role == "anonymous":
        return 401
    return 403 if role.startswith("assessor") else 200


def ministry_subscription(scene: Scene, role: str) -> int:
    """The ministry's subscription: a region's key cannot see it."""
    return {"ministry-admin": 200}.get(
        role,
        subscribers(scene, role) if role == "anonymous" or role.startswith("assessor") else 404,
    )


def job(scene: Scene, role: str) -> int:
    """A job is followed by the key that started it (here the ministry's)."""
    return {"anonymous": 401, "ministry-admin": 200}.get(role, 404)


def inside(scene: Scene, role: str) -> int:
    """The region's own views (agencies, PJ, per-agency plans): its keys; to anyone else
    they do not exist."""
    if role == "anonymous":
        return 401
    return 200 if role in OWN_KEYS else 404


Expect = Callable[[Scene, str], int]
RANKING = "framework=spbe-2020&period=2024"
# Route → (URL for the scene, the status each role gets).
READS: dict[str, tuple[Callable[[Scene], str], Expect]] = {
    "/healthz": (lambda s: "/healthz", public),
    "/readyz": (lambda s: "/readyz", public),
    "/v1/regions": (lambda s: "/v1/regions?province=32", public),
    "/v1/regions/{code}": (lambda s: f"/v1/regions/{OWN}", public),
    "/v1/frameworks": (lambda s: "/v1/frameworks", public),
    "/v1/frameworks/{framework_id}": (lambda s: "/v1/frameworks/spbe-2020", public),
    "/v1/metrics/catalogue": (lambda s: "/v1/metrics/catalogue", public),
    "/v1/rankings": (lambda s: f"/v1/rankings?{RANKING}", public),
    "/v1/rankings/export": (lambda s: f"/v1/rankings/export?{RANKING}", public),
    "/v1/trends": (lambda s: f"/v1/trends?framework=spbe-2020&region={OWN}", public),
    "/v1/compare": (lambda s: f"/v1/compare?{RANKING}&regions={OWN},{FOREIGN}", public),
    "/v1/dashboard": (lambda s: f"/v1/dashboard?{RANKING}&province=32", public),
    "/v1/assessments": (lambda s: "/v1/assessments?limit=1000", public),
    "/v1/assessments/{assessment_id}": (lambda s: f"/v1/assessments/{s.assessment}", attached),
    "/v1/assessments/{assessment_id}/results": (
        lambda s: f"/v1/assessments/{s.assessment}/results",
        attached,
    ),
    "/v1/assessments/{assessment_id}/summary": (
        lambda s: f"/v1/assessments/{s.assessment}/summary",
        attached,
    ),
    "/v1/assessments/{assessment_id}/results/export": (
        lambda s: f"/v1/assessments/{s.assessment}/results/export",
        attached,
    ),
    # A plan is read off the assessment's values: whoever may see the assessment.
    "/v1/assessments/{assessment_id}/plan": (
        lambda s: f"/v1/assessments/{s.assessment}/plan?target=Baik",
        attached,
    ),
    "/v1/assessments/{assessment_id}/plan/export": (
        lambda s: f"/v1/assessments/{s.assessment}/plan/export?target=Baik&format=csv",
        attached,
    ),
    "/v1/assessments/{assessment_id}/evidence-requests": (
        lambda s: f"/v1/assessments/{s.assessment}/evidence-requests?status=all",
        attached_with_key,
    ),
    "/v1/evidence": (lambda s: f"/v1/evidence?assessment_id={s.assessment}", attached_with_key),
    "/v1/evidence/{item_id}/download": (
        lambda s: f"/v1/evidence/{s.item}/download",
        attached_with_key,
    ),
    "/v1/metrics": (lambda s: "/v1/metrics", any_key),
    "/v1/jobs/{job_id}": (lambda s: f"/v1/jobs/{s.job}", job),
    "/v1/webhooks": (lambda s: "/v1/webhooks", subscribers),
    "/v1/webhooks/{subscription_id}/deliveries": (
        lambda s: f"/v1/webhooks/{s.subscription}/deliveries",
        ministry_subscription,
    ),
    "/v1/audit": (lambda s: "/v1/audit", ministry),
    "/v1/keys": (lambda s: "/v1/keys", ministry),
    "/v1/me": (lambda s: "/v1/me", any_key),
    "/v1/me/assignments": (lambda s: "/v1/me/assignments", any_key),
    "/v1/regions/{code}/agencies": (lambda s: f"/v1/regions/{OWN}/agencies", inside),
    "/v1/regions/{code}/agencies/comparison": (
        lambda s: f"/v1/regions/{OWN}/agencies/comparison?{RANKING}",
        inside,
    ),
    "/v1/regions/{code}/agencies/comparison/export": (
        lambda s: f"/v1/regions/{OWN}/agencies/comparison/export?{RANKING}",
        inside,
    ),
    "/v1/assessments/{assessment_id}/responsibilities": (
        lambda s: f"/v1/assessments/{s.assessment}/responsibilities",
        inside,
    ),
    "/v1/assessments/{assessment_id}/agencies": (
        lambda s: f"/v1/assessments/{s.assessment}/agencies?target=Baik",
        inside,
    ),
    "/v1/assessments/{assessment_id}/agencies/export": (
        lambda s: f"/v1/assessments/{s.assessment}/agencies/export?target=Baik",
        inside,
    ),
}
# The reads that show an internal assessment's figures, to the region's own keys only.
INTERNAL_SHOWN = {
    "/v1/assessments",
    "/v1/regions/{code}/agencies/comparison",
    "/v1/regions/{code}/agencies/comparison/export",
}


def test_every_read_route_is_in_the_matrix(settings: Settings) -> None:
    paths = create_app(settings).openapi()["paths"]
    reads = {path for path, operations in paths.items() if "get" in operations}
    assert reads == set(READS), "add the new read endpoint to READS"


def leaks(scene: Scene, role: str, path: str, body: object) -> bool | None:
    """Whether a list or figure shows Kota Bogor's assessment (or its raw points); None for a
    read whose body this does not inspect."""
    if path == "/v1/assessments":
        return str(scene.assessment) in {item["id"] for item in body["items"]}  # type: ignore[index]
    if path == "/v1/rankings":
        return OWN in {item["region"] for item in body["items"]}  # type: ignore[index]
    if path == "/v1/trends":
        return bool(body["items"])  # type: ignore[index]
    if path == "/v1/compare":
        spbe = next(node for node in body["nodes"] if node["id"] == "spbe")  # type: ignore[index]
        return spbe["values"][OWN] is not None
    if path == "/v1/metrics":
        return OWN in {item["region"] for item in body["items"]}  # type: ignore[index]
    if path == "/v1/me/assignments":
        return str(scene.assessment) in {item["id"] for item in body["items"]}  # type: ignore[index]
    if path == "/v1/dashboard":
        return body["coverage"]["with_results"] == 1  # type: ignore[index]
    if path == "/v1/assessments/{assessment_id}/summary":
        return body["rank"]["national"] == 1  # type: ignore[index]
    return None


def leaks_in_file(scene: Scene, path: str, content: bytes) -> bool | None:
    """Whether an export shows Kota Bogor's figures; None for a file this does not inspect."""
    if path == "/v1/rankings/export":
        return f"\n1,{OWN},".encode() in content  # its rank-1 row
    if path == "/v1/assessments/{assessment_id}/results/export":
        return b"3.50" in content  # the stored index of its root node
    return None


def shown(scene: Scene, role: str, path: str) -> bool:
    """Whether ``path`` should show it to ``role``: lists follow visibility, figures across
    regions count published results only (except for the ministry), raw points follow the
    caller's regions."""
    if path == "/v1/assessments":
        return sees(scene, role)
    if path == "/v1/metrics":
        return role in METRIC_READERS
    if path == "/v1/me/assignments":
        return role == "assessor:assigned"
    if path == "/v1/assessments/{assessment_id}/results/export":
        return sees(scene, role)  # its own results, to whoever may see it
    return scene.published or role == "ministry-admin"


@pytest.mark.storage_backends("local", "s3")  # evidence downloads from either store
async def test_read_authorization(client: httpx.AsyncClient, scene: Scene) -> None:
    cells = 0
    for role in ROLES:
        for path, (url, expect) in READS.items():
            response = await client.get(url(scene), headers=scene.world.headers[role])
            expected = expect(scene, role)
            assert response.status_code == expected, (role, path, response.text)
            if expected >= 400:
                assert response.headers["content-type"] == "application/problem+json"
            elif response.headers["content-type"].startswith("application/json"):
                leaked = leaks(scene, role, path, response.json())
                if leaked is not None:
                    assert leaked == shown(scene, role, path), (role, path)
            else:
                leaked = leaks_in_file(scene, path, response.content)
                if leaked is not None:
                    assert leaked == shown(scene, role, path), (role, path)
            if expected == 200 and not path.startswith("/v1/frameworks"):
                # The internal assessment's index: only in the region's own views.
                leaked = INTERNAL_INDEX.encode() in response.content
                assert leaked == (role in OWN_KEYS and path in INTERNAL_SHOWN), (role, path)
            cells += 1
    assert cells == len(ROLES) * len(READS)
    # The internal assessment itself, and everything attached to it: the region's keys only,
    # whatever its state (published included).
    for role in ROLES:
        for url in (
            f"/v1/assessments/{scene.internal}",
            f"/v1/assessments/{scene.internal}/results",
            f"/v1/assessments/{scene.internal}/summary",
            f"/v1/assessments/{scene.internal}/results/export",
            f"/v1/evidence?assessment_id={scene.internal}",
        ):
            response = await client.get(url, headers=scene.world.headers[role])
            expected = 200 if role in OWN_KEYS else 404
            if role == "anonymous" and url.startswith("/v1/evidence"):
                expected = 401
            assert response.status_code == expected, (role, url, response.text)
