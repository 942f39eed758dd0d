"""API keys: the ministry's list and revocation, every caller's own key and assignments, and
revocation and rotation taking effect on the very next request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Context, Principal
from services.domain.access.service import create_key, issue_key, rotate_key
from services.kit.errors import Conflict, NotFound, Unprocessable
from services.models import Assessment, AssessmentAssignment, AuditEvent, Role

ROLES = ("anonymous", "super-app", "region-operator", "assessor", "ministry-admin")
REGIONS = {"super-app": ["32.71"], "region-operator": ["32.71", "32.16"]}


@dataclass
class Keys:
    headers: dict[str, dict[str, str]]
    ids: dict[str, uuid.UUID]
    secrets: dict[str, str]


@pytest.fixture
async def keys(session: AsyncSession) -> Keys:
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    ids: dict[str, uuid.UUID] = {}
    secrets: dict[str, str] = {}
    for role in ROLES[1:]:
        key, secret = await create_key(
            session, name=f"{role} key", role=Role(role), regions=REGIONS.get(role, [])
        )
        headers[role] = {"Authorization": f"Bearer {secret}"}
        ids[role] = key.id
        secrets[role] = secret
    await session.commit()
    return Keys(headers, ids, secrets)


def expected_status(role: str) -> int:
    return {"anonymous": 401, "ministry-admin": 200}.get(role, 403)


# GET /v1/keys


@pytest.mark.parametrize("role", ROLES)
async def test_only_a_ministry_admin_lists_keys(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    answer = await client.get("/v1/keys", headers=keys.headers[role])
    assert answer.status_code == expected_status(role), answer.text
    if role != "ministry-admin":
        assert answer.headers["content-type"] == "application/problem+json"
        return
    page = answer.json()
    assert page["next_cursor"] is None
    listed = {item["id"]: item for item in page["items"]}
    assert set(listed) == {str(key_id) for key_id in keys.ids.values()}
    operator = listed[str(keys.ids["region-operator"])]
    assert operator["name"] == "region-operator key"
    assert operator["role"] == "region-operator"
    assert operator["regions"] == ["32.16", "32.71"]
    assert keys.secrets["region-operator"].startswith(operator["prefix"])
    assert len(operator["prefix"]) == len("cerdas_") + 6
    assert operator["created_at"]
    assert operator["revoked_at"] is None
    # Never a secret or its hash: only the fields of the schema.
    assert set(operator) == {
        "id",
        "name",
        "role",
        "regions",
        "prefix",
        "created_at",
        "revoked_at",
    }
    for secret in keys.secrets.values():
        assert secret not in answer.text


async def test_the_key_list_pages_with_cursors_and_filters_revoked_keys(
    client: httpx.AsyncClient, session: AsyncSession, keys: Keys
) -> None:
    admin = keys.headers["ministry-admin"]
    for n in range(3):
        await create_key(session, name=f"extra {n}", role=Role.ASSESSOR, regions=[])
    await session.commit()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/keys", headers=admin, params=params)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3  # 7 keys, 3 a page
    assert len(seen) == len(set(seen)) == 7

    revoked = await client.post(f"/v1/keys/{keys.ids['assessor']}/revoke", headers=admin)
    assert revoked.status_code == 200
    only_revoked = (await client.get("/v1/keys?revoked=true", headers=admin)).json()["items"]
    assert [item["id"] for item in only_revoked] == [str(keys.ids["assessor"])]
    live = (await client.get("/v1/keys?revoked=false", headers=admin)).json()["items"]
    assert len(live) == 6
    assert str(keys.ids["assessor"]) not in {item["id"] for item in live}

    forged = await client.get("/v1/keys", headers=admin, params={"cursor": "bm90LWEtY3Vyc29y"})
    assert forged.status_code == 422
    assert forged.json()["errors"][0]["pointer"] == "/cursor"


# POST /v1/keys/{id}/revoke


@pytest.mark.parametrize("role", ROLES)
async def test_only_a_ministry_admin_revokes_keys(
    client: httpx.AsyncClient, keys: Keys, role: str
) -> None:
    target = keys.ids["super-app"]
    answer = await client.post(f"/v1/keys/{target}/revoke", headers=keys.headers[role])
    assert answer.status_code == expected_status(role), answer.text
    still = await client.get("/v1/me", headers=keys.headers["super-app"])
    if role == "ministry-admin":
        assert answer.json()["id"] == str(target)
        assert answer.json()["revoked_at"] is not None
        assert still.status_code == 401
    else:
        assert still.status_code == 200  # a refused revocation changes nothing


async def test_a_revoked_key_is_refused_on_its_next_request_and_revoking_is_idempotent(
    client: httpx.AsyncClient, session: AsyncSession, keys: Keys
) -> None:
    admin = keys.headers["ministry-admin"]
    operator = keys.headers["region-operator"]
    target = keys.ids["region-operator"]
    assert (await client.get("/v1/me", headers=operator)).status_code == 200

    first = await client.post(
        f"/v1/keys/{target}/revoke", headers={**admin, "X-Request-ID": "revoke-operator-1"}
    )
    assert first.status_code == 200
    refused = await client.get("/v1/me", headers=operator)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The API key is unknown or revoked."
    # On every route, writes included.
    write = await client.post(
        "/v1/assessments",
        headers=operator,
        json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
    )
    assert write.status_code == 401

    again = await client.post(
        f"/v1/keys/{target}/revoke", headers={**admin, "X-Request-ID": "revoke-operator-2"}
    )
    assert again.status_code == 200
    assert again.json() == first.json()  # the key as it stands: revoked at the first time

    rows = (
        await session.scalars(
            select(AuditEvent).where(
                AuditEvent.entity == "api_key", AuditEvent.entity_id == str(target)
            )
        )
    ).all()
    assert [(row.action, row.request_id) for row in rows] == [
        ("api_key.revoke", "revoke-operator-1")
    ]
    (row,) = rows
    assert row.actor_id == keys.ids["ministry-admin"]
    assert row.role == "ministry-admin"
    assert row.before == {"revoked_at": None}
    assert row.after == {"revoked_at": first.json()["revoked_at"]}

    trail = await client.get(
        "/v1/audit", headers=admin, params={"entity": "api_key", "entity_id": str(target)}
    )
    assert [item["request_id"] for item in trail.json()["items"]] == ["revoke-operator-1"]


async def test_revoking_an_unknown_key_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    answer = await client.post(
        f"/v1/keys/{uuid.uuid4()}/revoke", headers=keys.headers["ministry-admin"]
    )
    assert answer.status_code == 404
    malformed = await client.post(
        "/v1/keys/not-a-uuid/revoke", headers=keys.headers["ministry-admin"]
    )
    assert malformed.status_code == 422


async def test_a_keyed_revocation_replays_its_first_answer(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    admin = {**keys.headers["ministry-admin"], "Idempotency-Key": "revoke-assessor"}
    path = f"/v1/keys/{keys.ids['assessor']}/revoke"
    first = await client.post(path, headers=admin)
    retry = await client.post(path, headers=admin)
    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    other = await client.post(f"/v1/keys/{keys.ids['super-app']}/revoke", headers=admin)
    assert other.status_code == 422  # the same key on another request


async def test_an_admin_may_revoke_its_own_key_and_is_then_refused(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    admin = keys.headers["ministry-admin"]
    answer = await client.post(f"/v1/keys/{keys.ids['ministry-admin']}/revoke", headers=admin)
    assert answer.status_code == 200
    assert (await client.get("/v1/keys", headers=admin)).status_code == 401


# GET /v1/me


@pytest.mark.parametrize("role", ROLES)
async def test_me_names_the_calling_key(client: httpx.AsyncClient, keys: Keys, role: str) -> None:
    answer = await client.get("/v1/me", headers=keys.headers[role])
    if role == "anonymous":
        assert answer.status_code == 401
        return
    assert answer.status_code == 200
    assert answer.json() == {
        "id": str(keys.ids[role]),
        "kind": "key",
        "name": f"{role} key",
        "role": role,
        "regions": sorted(REGIONS.get(role, [])),
        "issuer": None,
        "sub": None,
        "nip": None,
    }


async def test_me_refuses_an_unknown_key(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/me", headers={"Authorization": "Bearer cerdas_nonsense"})
    assert answer.status_code == 401


# GET /v1/me/assignments


async def test_an_assessor_sees_its_assignments_in_the_assessment_shape(
    client: httpx.AsyncClient, session: AsyncSession, keys: Keys
) -> None:
    assessor = keys.ids["assessor"]
    other, _ = await create_key(session, name="another assessor", role=Role.ASSESSOR, regions=[])
    made = [
        Assessment(region_code=code, framework_id=framework, period=period, state=state)
        for code, framework, period, state in (
            ("32.71", "spbe-2020", 2023, "published"),
            ("32.16", "gmsc-2023", 2024, "in_review"),
            ("32.75", "spbe-2020", 2024, "submitted"),  # assigned to the other assessor only
            ("32.71", "spbe-2020", 2024, "draft"),  # assigned to nobody
        )
    ]
    session.add_all(made)
    await session.flush()
    session.add_all(
        [
            AssessmentAssignment(assessment_id=made[0].id, key_id=assessor),
            AssessmentAssignment(assessment_id=made[1].id, key_id=assessor),
            AssessmentAssignment(assessment_id=made[2].id, key_id=other.id),
        ]
    )
    await session.commit()

    answer = await client.get("/v1/me/assignments", headers=keys.headers["assessor"])
    assert answer.status_code == 200
    assert answer.json()["next_cursor"] is None
    items = answer.json()["items"]
    assert [item["id"] for item in items] == [str(made[1].id), str(made[0].id)]  # newest first
    for item in items:
        one = await client.get(
            f"/v1/assessments/{item['id']}", headers=keys.headers["ministry-admin"]
        )
        assert item == one.json()  # the shape of GET /v1/assessments items


@pytest.mark.parametrize("role", ["super-app", "region-operator", "ministry-admin"])
async def test_other_roles_have_no_assignments(
    client: httpx.AsyncClient, session: AsyncSession, keys: Keys, role: str
) -> None:
    assessment = Assessment(region_code="32.71", framework_id="spbe-2020", period=2024)
    session.add(assessment)
    await session.flush()
    session.add(AssessmentAssignment(assessment_id=assessment.id, key_id=keys.ids["assessor"]))
    await session.commit()
    answer = await client.get("/v1/me/assignments", headers=keys.headers[role])
    assert (answer.status_code, answer.json()) == (200, {"items": [], "next_cursor": None})


async def test_assignments_need_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/me/assignments")).status_code == 401


# Issuing and rotating (the CLI's operations, tests/test_cli.py runs the command itself)

OPERATOR = Context(
    Principal(key_id=None, name="cerdas keys (CLI)", role=Role.MINISTRY_ADMIN), "cli-test"
)


async def test_rotation_gives_the_same_key_a_new_secret_and_refuses_the_old_one(
    client: httpx.AsyncClient, session: AsyncSession, keys: Keys
) -> None:
    old = keys.headers["super-app"]
    key, secret = await rotate_key(session, OPERATOR, keys.ids["super-app"])
    await session.commit()
    assert secret != keys.secrets["super-app"]
    assert secret.startswith(key.prefix)
    assert (await client.get("/v1/me", headers=old)).status_code == 401
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json() == {
        "id": str(keys.ids["super-app"]),
        "kind": "key",
        "name": "super-app key",
        "role": "super-app",
        "regions": ["32.71"],
        "issuer": None,
        "sub": None,
        "nip": None,
    }
    (row,) = (
        await session.scalars(select(AuditEvent).where(AuditEvent.action == "api_key.rotate"))
    ).all()
    assert (row.entity_id, row.request_id, row.actor_id) == (
        str(key.id),
        "cli-test",
        None,
    )
    assert row.actor_name == "cerdas keys (CLI)"
    assert row.after == {"prefix": key.prefix}
    assert keys.secrets["super-app"] not in str(row.before) + str(row.after)


async def test_a_revoked_or_unknown_key_is_not_rotated(
    client: httpx.AsyncClient, keys: Keys, session: AsyncSession
) -> None:
    await client.post(
        f"/v1/keys/{keys.ids['assessor']}/revoke", headers=keys.headers["ministry-admin"]
    )
    with pytest.raises(Conflict):
        await rotate_key(session, OPERATOR, keys.ids["assessor"])
    with pytest.raises(NotFound):
        await rotate_key(session, OPERATOR, uuid.uuid4())


async def test_issuing_a_key_is_checked_and_audited(session: AsyncSession) -> None:
    key, secret = await issue_key(
        session, OPERATOR, name="Bogor Single Window", role=Role.SUPER_APP, regions=["32.71"]
    )
    await session.flush()  # the sessions here do not autoflush
    (row,) = (
        await session.scalars(select(AuditEvent).where(AuditEvent.entity_id == str(key.id)))
    ).all()
    assert (row.action, row.request_id) == ("api_key.create", "cli-test")
    assert row.after == {
        "name": "Bogor Single Window",
        "role": "super-app",
        "regions": ["32.71"],
        "prefix": key.prefix,
    }
    assert secret not in str(row.after)
    for name, role, regions in (
        ("no region", Role.REGION_OPERATOR, []),
        ("unknown region", Role.SUPER_APP, ["99.99"]),
        ("", Role.ASSESSOR, []),
    ):
        with pytest.raises(Unprocessable):
            await issue_key(session, OPERATOR, name=name, role=role, regions=regions)
