"""Kota Bogor's SPBE evaluation 2024, from draft to published, as the people involved do it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.domain.access.service import create_key
from services.models import AuditEvent
from services.scoring.service import recompute

# Levels giving Σ(weight × level) = 372, an index of 3.72: level 4 for A2–A4 (I11–I20), I21 and
# the services A7–A8 (I32–I47), level 3 elsewhere.
LEVELS = {f"I{n}": 4 if 11 <= n <= 21 or n >= 32 else 3 for n in range(1, 48)}
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"


async def keys(session: AsyncSession) -> dict[str, Any]:
    made: dict[str, Any] = {}
    for name, role, regions in (
        ("Diskominfo Kota Bogor", "region-operator", ["32.71"]),
        ("Asesor SPBE", "assessor", []),
        ("KemenPANRB", "ministry-admin", []),
    ):
        key, secret = await create_key(session, name=name, role=role, regions=regions)
        made[role] = {"Authorization": f"Bearer {secret}"}
        made[f"{role}:id"] = str(key.id)
    await session.commit()
    return made


@pytest.mark.slow
@pytest.mark.storage_backends("local", "s3")  # its evidence goes to either store
async def test_kota_bogor_2024_from_draft_to_published(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    k = await keys(session)
    region, assessor, ministry = k["region-operator"], k["assessor"], k["ministry-admin"]

    async def move(who: dict[str, str], to: str, **extra: Any) -> httpx.Response:
        return await client.post(
            f"/v1/assessments/{aid}/transitions", headers=who, json={"to": to, **extra}
        )

    opened = await client.post(
        "/v1/assessments",
        headers=region,
        json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
    )
    assert opened.status_code == 201, opened.text
    aid = opened.json()["id"]
    assert opened.json()["state"] == "draft"

    # The region fills in its self-assessment, rating itself higher on I21 than it will keep.
    own = {**LEVELS, "I21": 5}
    filled = await client.put(f"/v1/assessments/{aid}/inputs", headers=region, json={"values": own})
    assert filled.json()["written"] == "self"
    assert (await move(region, "in_review")).status_code == 409  # not from draft
    assert (await move(region, "submitted")).json()["state"] == "submitted"

    # Unpublished: invisible to the public, visible to the region.
    assert (await client.get(f"/v1/assessments/{aid}")).status_code == 404
    assert (await client.get(f"/v1/assessments/{aid}", headers=region)).status_code == 200

    # The ministry assigns an assessor, who starts the review and asks for more evidence.
    # Not assigned yet: the assessment is hidden from this assessor, whatever it tries.
    assert (await move(assessor, "in_review")).status_code == 404
    assigned = await client.post(
        f"/v1/assessments/{aid}/assessors", headers=ministry, json={"key_id": k["assessor:id"]}
    )
    assert assigned.status_code == 201
    assert (await move(assessor, "in_review")).json()["state"] == "in_review"
    asked = await client.post(
        f"/v1/assessments/{aid}/evidence-requests",
        headers=assessor,
        json={
            "node_ids": ["I11", "I12"],
            "message": "Lampirkan Perwali Arsitektur SPBE",
            "due_date": "2024-09-30",
        },
    )
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["id"]
    open_requests = (
        await client.get(f"/v1/assessments/{aid}/evidence-requests", headers=region)
    ).json()["items"]
    assert [r["id"] for r in open_requests] == [request_id]
    assert (await client.get(f"/v1/assessments/{aid}", headers=region)).json()["state"] == (
        "evidence_requested"
    )

    # The region answers with an upload, and sends the assessment back for review.
    uploaded = await client.post(
        "/v1/evidence",
        headers=region,
        data={"assessment_id": aid, "node_ids": "I11,I12", "request_id": request_id},
        files={"file": ("perwali-arsitektur-spbe.pdf", PDF, "application/pdf")},
    )
    assert uploaded.status_code == 201, uploaded.text
    assert (
        await client.get(f"/v1/assessments/{aid}/evidence-requests", headers=region)
    ).json() == {"items": [], "next_cursor": None}
    answered = (
        await client.get(
            f"/v1/assessments/{aid}/evidence-requests",
            params={"status": "answered"},
            headers=region,
        )
    ).json()["items"]
    assert answered[0]["answered_by_item"] == uploaded.json()["id"]
    assert (await move(region, "in_review")).json()["state"] == "in_review"

    # The assessor verifies I21 at level 4 and closes the review; the ministry publishes.
    verified = await client.put(
        f"/v1/assessments/{aid}/inputs",
        headers=assessor,
        json={"values": {"I21": 4}, "note": "Bukti manajemen risiko"},
    )
    assert verified.json()["written"] == "verified"
    assert (await move(assessor, "verified")).json()["state"] == "verified"
    assert (await move(assessor, "published")).status_code == 403  # the ministry publishes
    published = (await move(ministry, "published")).json()
    assert published["state"] == "published"
    # The answer is the assessment as it now stands: publishing bumped its input revision.
    stored = (await client.get(f"/v1/assessments/{aid}", headers=ministry)).json()
    assert published == stored
    assert published["region"]["code"] == "32.71"

    await recompute(sessionmaker, uuid.UUID(aid), None)
    tree = (await client.get(f"/v1/assessments/{aid}/results")).json()  # public now
    assert tree["result"]["index"] == "3.72"
    assert tree["result"]["predicate"] == "Sangat Baik"
    nodes = {node["id"]: node for node in tree["nodes"]}
    assert (nodes["I21"]["value"], nodes["I21"]["value_from"]) == ("4", "verified")
    assert (nodes["I1"]["value"], nodes["I1"]["value_from"]) == ("3", "self")
    assert nodes["I11"]["evidence_count"] == 1

    # Published inputs are locked; a correction reopens with a reason, and is audited.
    locked = await client.put(
        f"/v1/assessments/{aid}/inputs", headers=assessor, json={"values": {"I21": 3}}
    )
    assert locked.status_code == 409
    assert (await move(ministry, "in_review")).status_code == 422
    reopened = await move(ministry, "in_review", reason="Koreksi nilai I21 setelah keberatan")
    assert reopened.json()["state"] == "in_review"

    trail = (
        await client.get(
            "/v1/audit", headers=ministry, params={"entity": "assessment", "entity_id": aid}
        )
    ).json()
    transitions = [
        (e["before"]["state"], e["after"]["state"], e["role"])
        for e in reversed(trail["items"])
        if e["action"] == "assessment.transition"
    ]
    assert transitions == [
        ("draft", "submitted", "region-operator"),
        ("submitted", "in_review", "assessor"),
        ("evidence_requested", "in_review", "region-operator"),
        ("in_review", "verified", "assessor"),
        ("verified", "published", "ministry-admin"),
        ("published", "in_review", "ministry-admin"),
    ]
    assert trail["items"][0]["after"]["reason"] == "Koreksi nilai I21 setelah keberatan"
    assert trail["items"][0]["request_id"]
    inputs_trail = (
        await client.get("/v1/audit", headers=ministry, params={"entity_id": f"{aid}/I21"})
    ).json()["items"]
    assert [(e["action"], e["after"]) for e in reversed(inputs_trail)] == [
        ("input.self", {"self": "5", "verified": None}),
        ("input.verified", {"self": "5", "verified": "4"}),
    ]
    assert (await client.get("/v1/audit", headers=region)).status_code == 403


async def test_bad_values_are_refused_with_their_node_and_change_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    region = (await keys(session))["region-operator"]
    opened = await client.post(
        "/v1/assessments",
        headers=region,
        json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
    )
    aid = opened.json()["id"]
    off_scale = await client.put(
        f"/v1/assessments/{aid}/inputs", headers=region, json={"values": {"I1": 3, "I7": 6}}
    )
    assert off_scale.status_code == 422
    assert off_scale.json()["errors"][0]["pointer"] == "/values/I7"
    assert "off the scale" in off_scale.json()["detail"]
    computed = await client.put(
        f"/v1/assessments/{aid}/inputs", headers=region, json={"values": {"I99": 3}}
    )
    assert computed.json()["errors"][0]["pointer"] == "/values/I99"
    stored = await client.get(f"/v1/assessments/{aid}", headers=region)
    assert stored.json()["input_revision"] == 0  # nothing was written


async def test_keyed_workflow_writes_replay_their_first_answer(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A client whose answer was lost retries with the same Idempotency-Key and gets that
    answer: the transition is not made twice (no 409), the audit trail has one entry."""
    k = await keys(session)
    region = k["region-operator"]
    opened = await client.post(
        "/v1/assessments",
        headers={**region, "Idempotency-Key": "open-bogor-2024"},
        json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
    )
    again = await client.post(
        "/v1/assessments",
        headers={**region, "Idempotency-Key": "open-bogor-2024"},
        json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
    )
    assert (opened.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == opened.json()
    aid = opened.json()["id"]
    move = {"Idempotency-Key": "submit-bogor-2024", **region}
    first = await client.post(
        f"/v1/assessments/{aid}/transitions", headers=move, json={"to": "submitted"}
    )
    retry = await client.post(
        f"/v1/assessments/{aid}/transitions", headers=move, json={"to": "submitted"}
    )
    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.json() == first.json()
    unkeyed = await client.post(
        f"/v1/assessments/{aid}/transitions", headers=region, json={"to": "submitted"}
    )
    assert unkeyed.status_code == 409  # without a key a repeat is a new request
    other_body = await client.post(
        f"/v1/assessments/{aid}/transitions", headers=move, json={"to": "draft"}
    )
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency-key-reused"
    audited = await session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.entity_id == aid, AuditEvent.action.like("assessment.%"))
    )
    assert audited == 2  # created once, submitted once


@pytest.mark.slow
async def test_a_region_enters_leaves_only_and_verified_leaves_replace_an_official_index(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    k = await keys(session)
    region, assessor, ministry = k["region-operator"], k["assessor"], k["ministry-admin"]
    opened = await client.post(
        "/v1/assessments",
        headers=region,
        json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
    )
    aid = opened.json()["id"]
    url = f"/v1/assessments/{aid}"

    async def index() -> tuple[str | None, str | None]:
        await recompute(sessionmaker, uuid.UUID(aid), None)
        tree = (await client.get(f"{url}/results", headers=ministry)).json()
        spbe = next(node for node in tree["nodes"] if node["id"] == "spbe")
        return tree["result"]["index"], spbe["value_from"]

    # The region cannot type its index, a domain or an aspect: only leaves.
    for inner in ("spbe", "D1", "A1"):
        typed = await client.put(f"{url}/inputs", headers=region, json={"values": {inner: 3.5}})
        assert typed.status_code == 422, typed.text
        assert typed.json()["errors"][0]["pointer"] == f"/values/{inner}"
    # An empty write changes nothing and is refused (it would bump the revision for nothing).
    empty = await client.put(f"{url}/inputs", headers=region, json={"values": {}})
    assert empty.status_code == 422
    assert (await client.get(url, headers=region)).json()["input_revision"] == 0
    # Nor may anyone but the ministry import a results letter.
    letter = {"values": {"spbe": "3.50"}, "source": "Surat hasil evaluasi SPBE 2024"}
    for who in (region, assessor):
        refused = await client.put(f"{url}/official-results", headers=who, json=letter)
        assert refused.status_code in (403, 404)
    leaf = await client.put(
        f"{url}/official-results", headers=ministry, json={"values": {"I1": "3"}, "source": "x"}
    )
    assert leaf.status_code == 422
    imported = await client.put(f"{url}/official-results", headers=ministry, json=letter)
    assert imported.status_code == 200, imported.text
    assert await index() == ("3.50", "official")

    # The region's own leaf values do not replace the published figure ...
    assert (await client.put(f"{url}/inputs", headers=region, json={"values": LEVELS})).is_success
    assert await index() == ("3.50", "official")
    # ... verified ones do, as soon as they exist: 3.72 from the verified levels.
    await client.post(f"{url}/transitions", headers=region, json={"to": "submitted"})
    await client.post(f"{url}/assessors", headers=ministry, json={"key_id": k["assessor:id"]})
    await client.post(f"{url}/transitions", headers=assessor, json={"to": "in_review"})
    verified = await client.put(f"{url}/inputs", headers=assessor, json={"values": LEVELS})
    assert verified.json()["written"] == "verified"
    assert await index() == ("3.72", None)
    audited = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "input.official")
    )
    assert audited == 1


async def test_outside_index_indicators_are_entered_in_review_not_self_assessed(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """IPD's I5 comes from Bappenas's Satu Data Indonesia score: a region cannot rate itself on
    it, an assessor enters it in review (as a verified value)."""
    k = await keys(session)
    region, assessor, ministry = k["region-operator"], k["assessor"], k["ministry-admin"]
    opened = await client.post(
        "/v1/assessments",
        headers=region,
        json={"region": "32.71", "framework": "ipd-2026", "period": 2026},
    )
    assert opened.status_code == 201, opened.text
    url = f"/v1/assessments/{opened.json()['id']}"
    refused = await client.put(
        f"{url}/inputs", headers=region, json={"values": {"I1": "2.5", "I5": "3"}}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["pointer"] == "/values/I5"
    assert "Bappenas (Satu Data Indonesia)" in refused.json()["detail"]
    assert (await client.get(url, headers=region)).json()["input_revision"] == 0
    own = await client.put(f"{url}/inputs", headers=region, json={"values": {"I1": "2.5"}})
    assert own.json()["written"] == "self"

    await client.post(f"{url}/transitions", headers=region, json={"to": "submitted"})
    await client.post(f"{url}/assessors", headers=ministry, json={"key_id": k["assessor:id"]})
    assert (
        await client.post(f"{url}/transitions", headers=assessor, json={"to": "in_review"})
    ).json()["state"] == "in_review"
    # An outside value names where it was taken from and the figure's date.
    bare = await client.put(f"{url}/inputs", headers=assessor, json={"values": {"I5": "2.35"}})
    assert bare.status_code == 422, bare.text
    assert bare.json()["errors"][0]["pointer"] == "/sources/I5"
    misplaced = await client.put(
        f"{url}/inputs",
        headers=assessor,
        json={"values": {"I1": "3"}, "sources": {"I1": {"reference": "x", "as_of": "2026-05-12"}}},
    )
    assert misplaced.status_code == 422
    assert misplaced.json()["errors"][0]["pointer"] == "/sources/I1"
    assert (await client.get(url, headers=region)).json()["input_revision"] == 1
    sdi = {"reference": "Skor SDI 2025, Bappenas", "as_of": "2026-05-12"}
    entered = await client.put(
        f"{url}/inputs",
        headers=assessor,
        json={"values": {"I5": "2.35"}, "sources": {"I5": sdi}},
    )
    assert entered.status_code == 200, entered.text
    assert entered.json()["written"] == "verified"
    by_ministry = await client.put(
        f"{url}/inputs",
        headers=ministry,
        json={
            "values": {"I6": "2"},
            "sources": {"I6": {"reference": "Penilaian simpul JIGN 2025", "as_of": "2026-04-30"}},
        },
    )
    assert by_ministry.status_code == 200, by_ministry.text
    assert by_ministry.json()["written"] == "verified"
    await recompute(sessionmaker, uuid.UUID(opened.json()["id"]), None)
    nodes = {
        n["id"]: n for n in (await client.get(f"{url}/results", headers=ministry)).json()["nodes"]
    }
    assert (nodes["I5"]["value"], nodes["I5"]["note"]) == (
        "2.35",
        "from Bappenas (Satu Data Indonesia): Skor SDI 2025, Bappenas, as of 2026-05-12",
    )
    assert nodes["I7"]["note"] == "no value from BPS (EPSS statistik sektoral) yet: counted as 1"


async def test_a_recompute_run_request_is_audited_and_followed_by_its_requester_only(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    k = await keys(session)
    started = await client.post(
        "/v1/recompute-runs",
        json={"framework": "spbe-2020"},
        headers={**k["ministry-admin"], "X-Request-ID": "national-run-1"},
    )
    assert started.status_code == 202, started.text
    job = started.json()["id"]
    event = await session.scalar(
        select(AuditEvent).where(AuditEvent.action == "recompute_run.create")
    )
    assert event is not None
    assert (event.entity_id, event.request_id, event.actor_name) == (
        job,
        "national-run-1",
        "KemenPANRB",
    )
    assert (await client.get(f"/v1/jobs/{job}", headers=k["ministry-admin"])).status_code == 200
    assert (await client.get(f"/v1/jobs/{job}", headers=k["region-operator"])).status_code == 404
