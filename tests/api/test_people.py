"""People signed in with their organisation's SSO: a real OpenID Provider issues their tokens,
their claims give them a role, and the record (assignments, evidence requests, the audit trail)
names them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import AssessmentAssignment, AuditEvent, Person
from tests.api.test_workflow import keys
from tests.oidc.harness import PEOPLE, Provider

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def client(
    client_for: ClientFor, oidc_provider: Provider
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app that trusts the test provider."""
    async with client_for(oidc_issuers=(oidc_provider.settings(),)) as c:
        yield c


async def signed_in(provider: Provider, person: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await provider.token(person)}"}


async def in_review(client: httpx.AsyncClient, ministry: dict[str, str], region: str) -> str:
    """A 2024 SPBE assessment of ``region``, opened and submitted by the ministry."""
    opened = await client.post(
        "/v1/assessments",
        headers=ministry,
        json={"region": region, "framework": "spbe-2020", "period": 2024},
    )
    assert opened.status_code == 201, opened.text
    aid: str = opened.json()["id"]
    assert opened.headers["location"] == f"/v1/assessments/{aid}"
    moved = await client.post(
        f"/v1/assessments/{aid}/transitions", headers=ministry, json={"to": "submitted"}
    )
    assert moved.status_code == 200, moved.text
    return aid


async def test_a_person_assigned_by_sub_verifies_values_and_the_audit_row_names_them(
    client: httpx.AsyncClient, session: AsyncSession, oidc_provider: Provider
) -> None:
    ministry = (await keys(session))["ministry-admin"]
    siti = await signed_in(oidc_provider, "siti")
    bogor = await in_review(client, ministry, "32.71")
    bekasi = await in_review(client, ministry, "32.75")

    me = (await client.get("/v1/me", headers=siti)).json()
    assert me == {
        "id": me["id"],
        "kind": "person",
        "name": "Siti Rahma",
        "role": "assessor",
        "regions": [],
        "issuer": oidc_provider.issuer,
        "sub": "f:3271:siti.rahma",
        "nip": "198701012010012001",
    }
    # Not assigned yet: the assessment is hidden from her.
    assert (await client.get(f"/v1/assessments/{bogor}", headers=siti)).status_code == 404

    assigned = await client.post(
        f"/v1/assessments/{bogor}/assessors", headers=ministry, json={"sub": "f:3271:siti.rahma"}
    )
    assert assigned.status_code == 201, assigned.text
    assert assigned.json() == {
        "assessment_id": bogor,
        "key_id": None,
        "person_id": me["id"],
        "issuer": oidc_provider.issuer,
        "sub": "f:3271:siti.rahma",
    }
    mine = (await client.get("/v1/me/assignments", headers=siti)).json()["items"]
    assert [a["id"] for a in mine] == [bogor]

    review = await client.post(
        f"/v1/assessments/{bogor}/transitions", headers=siti, json={"to": "in_review"}
    )
    assert review.status_code == 200, review.text
    verified = await client.put(
        f"/v1/assessments/{bogor}/inputs", headers=siti, json={"values": {"I21": 4}}
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["written"] == "verified"

    row = await session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "input.verified", AuditEvent.entity_id == f"{bogor}/I21"
        )
    )
    assert row is not None
    assert (row.actor_id, str(row.actor_person_id)) == (None, me["id"])
    assert (row.actor_name, row.actor_subject, row.actor_nip, row.role) == (
        "Siti Rahma",
        "f:3271:siti.rahma",
        "198701012010012001",
        "assessor",
    )
    trail = await client.get("/v1/audit", headers=ministry, params={"actor": me["id"]})
    assert {e["action"] for e in trail.json()["items"]} == {
        "assessment.transition",
        "input.verified",
    }
    assert {e["actor_nip"] for e in trail.json()["items"]} == {"198701012010012001"}

    # Kota Bekasi's assessment is not hers: as if it did not exist, whatever she does.
    for attempt in (
        client.get(f"/v1/assessments/{bekasi}", headers=siti),
        client.put(f"/v1/assessments/{bekasi}/inputs", headers=siti, json={"values": {"I1": 4}}),
        client.post(
            f"/v1/assessments/{bekasi}/transitions", headers=siti, json={"to": "in_review"}
        ),
    ):
        refused = await attempt
        assert refused.status_code == 404, refused.text


async def test_an_evidence_request_and_an_assignment_name_the_people_who_made_them(
    client: httpx.AsyncClient, session: AsyncSession, oidc_provider: Provider
) -> None:
    dewi = await signed_in(oidc_provider, "dewi")  # ministry-admin, by her token's roles
    siti = await signed_in(oidc_provider, "siti")
    aid = await in_review(client, dewi, "32.71")
    assert (
        await client.post(
            f"/v1/assessments/{aid}/assessors", headers=dewi, json={"sub": "f:3271:siti.rahma"}
        )
    ).status_code == 201
    await client.post(f"/v1/assessments/{aid}/transitions", headers=siti, json={"to": "in_review"})
    asked = await client.post(
        f"/v1/assessments/{aid}/evidence-requests",
        headers=siti,
        json={"node_ids": ["I11"], "message": "Lampirkan Perwali Arsitektur SPBE"},
    )
    assert asked.status_code == 201, asked.text
    requester = {
        "kind": "person",
        "id": asked.json()["requested_by"]["id"],
        "name": "Siti Rahma",
        "sub": "f:3271:siti.rahma",
        "nip": "198701012010012001",
    }
    assert asked.json()["requested_by"] == requester
    listed = await client.get(f"/v1/assessments/{aid}/evidence-requests", headers=dewi)
    assert [r["requested_by"] for r in listed.json()["items"]] == [requester]

    assignment = await session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "assessment.assign", AuditEvent.entity_id == aid
        )
    )
    assert assignment is not None
    assert (assignment.actor_name, assignment.actor_subject, assignment.role) == (
        "Dewi Lestari",
        "f:pusat:dewi.lestari",
        "ministry-admin",
    )
    assert assignment.after is not None
    assert assignment.after["sub"] == "f:3271:siti.rahma"


async def test_a_person_can_be_assigned_before_their_first_sign_in(
    client: httpx.AsyncClient, session: AsyncSession, oidc_provider: Provider
) -> None:
    ministry = (await keys(session))["ministry-admin"]
    aid = await in_review(client, ministry, "32.71")
    body: dict[str, Any] = {"sub": "f:3271:asesor.baru"}
    assert (
        await client.post(f"/v1/assessments/{aid}/assessors", headers=ministry, json=body)
    ).status_code == 201
    # Assigning again changes nothing.
    assert (
        await client.post(f"/v1/assessments/{aid}/assessors", headers=ministry, json=body)
    ).status_code == 201
    person = await session.scalar(select(Person).where(Person.subject == "f:3271:asesor.baru"))
    assert person is not None
    assert person.name is None
    rows = await session.scalars(
        select(AssessmentAssignment).where(AssessmentAssignment.person_id == person.id)
    )
    assert len(rows.all()) == 1
    for bad, pointer in (
        ({"sub": "x", "key_id": "0b6f2a52-8a4e-4d43-9b8e-5f0e1d2c3b4a"}, "/"),
        ({}, "/"),
        ({"sub": "x", "issuer": "https://sso.example.go.id/realms/lain"}, "/issuer"),
    ):
        refused = await client.post(f"/v1/assessments/{aid}/assessors", headers=ministry, json=bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["pointer"] == pointer


async def test_a_region_operator_person_acts_for_the_regions_in_their_token(
    client: httpx.AsyncClient, session: AsyncSession, oidc_provider: Provider
) -> None:
    budi = await signed_in(oidc_provider, "budi")
    ministry = (await keys(session))["ministry-admin"]
    opened = await client.post(
        "/v1/assessments",
        headers=budi,
        json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
    )
    assert opened.status_code == 201, opened.text
    elsewhere = await client.post(
        "/v1/assessments",
        headers=budi,
        json={"region": "32.75", "framework": "spbe-2020", "period": 2024},
    )
    assert elsewhere.status_code == 403
    # Webhook subscriptions belong to integrations (keys), not to people.
    hooks = await client.post(
        "/v1/webhooks",
        headers=budi,
        json={"url": "https://sistem.example.go.id/hooks", "events": ["evidence.requested"]},
    )
    assert hooks.status_code == 403
    assert "API key" in hooks.json()["detail"]
    assert (
        await client.get(f"/v1/assessments/{opened.json()['id']}", headers=ministry)
    ).status_code == 200


@pytest.mark.parametrize(
    ("person", "code", "says"),
    [
        ("tamu", "no-role", "'realm_access.roles' claim holds no role"),
        ("rudi", "no-region", "'kemendagri_codes' claim names no Kemendagri region code"),
    ],
)
async def test_a_valid_sign_in_that_maps_to_no_role_is_403_saying_why(
    client: httpx.AsyncClient, oidc_provider: Provider, person: str, code: str, says: str
) -> None:
    headers = await signed_in(oidc_provider, person)
    for path in ("/v1/me", "/v1/regions"):
        answer = await client.get(path, headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == code
        assert says in answer.json()["detail"]


async def test_a_token_is_refused_where_no_issuer_is_trusted(
    client_for: ClientFor, oidc_provider: Provider
) -> None:
    headers = await signed_in(oidc_provider, "siti")
    async with client_for() as keys_only:
        answer = await keys_only.get("/v1/me", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert "trusts no OpenID issuer" in answer.json()["detail"]


def test_every_person_of_the_test_provider_has_a_subject() -> None:
    assert all(claims.get("sub") for claims in PEOPLE.values())
