from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.region.seed import seed_regions
from services.models import Region


async def walk(client: httpx.AsyncClient, params: dict[str, str | int]) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    cursor: str | None = None
    while True:
        response = await client.get(
            "/v1/regions", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_all_552_regions_are_listed_across_pages(client: httpx.AsyncClient) -> None:
    items = await walk(client, {"limit": 97})
    codes = [item["code"] for item in items]
    assert len(codes) == 552
    assert codes == sorted(set(codes)), "pages overlap or are out of order"
    kinds = [item["kind"] for item in items]
    assert kinds.count("provinsi") == 38
    assert kinds.count("kabupaten") + kinds.count("kota") == 514


async def test_seed_cases_have_their_kemendagri_codes(client: httpx.AsyncClient) -> None:
    expected = {
        "32.71": ("Kota Bogor", "kota"),
        "32.16": ("Kabupaten Bekasi", "kabupaten"),
        "32.75": ("Kota Bekasi", "kota"),
        "33.05": ("Kabupaten Kebumen", "kabupaten"),
    }
    for code, (name, kind) in expected.items():
        response = await client.get(f"/v1/regions/{code}")
        assert response.status_code == 200
        assert response.json() == {
            "code": code,
            "name": name,
            "kind": kind,
            "province_code": code[:2],
        }
    province = (await client.get("/v1/regions/32")).json()
    assert province == {
        "code": "32",
        "name": "Jawa Barat",
        "kind": "provinsi",
        "province_code": None,
    }


async def test_filters_by_kind_and_province(client: httpx.AsyncClient) -> None:
    jawa_barat = await walk(client, {"province": "32"})
    assert {item["province_code"] for item in jawa_barat} == {"32"}
    assert {"32.71", "32.16", "32.75"} <= {item["code"] for item in jawa_barat}
    cities = await walk(client, {"province": "32", "kind": "kota"})
    assert {item["kind"] for item in cities} == {"kota"}
    assert len(cities) == 9  # Jawa Barat's nine kota
    assert len(await walk(client, {"kind": "provinsi"})) == 38


async def test_unknown_region_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/regions/99.99")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 404
    assert problem["code"] == "not-found"
    assert "99.99" in problem["detail"]
    assert problem["instance"] == "/v1/regions/99.99"


async def test_unknown_province_filter_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/regions", params={"province": "99"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_bad_filters_say_what_and_where(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/regions", params={"kind": "desa"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["in"] == "query"
    assert problem["errors"][0]["pointer"] == "/kind"
    bad_cursor = await client.get("/v1/regions", params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["pointer"] == "/cursor"


async def test_seeding_again_changes_nothing(session: AsyncSession) -> None:
    await seed_regions(session)
    await seed_regions(session)
    assert await session.scalar(select(func.count()).select_from(Region)) == 552
