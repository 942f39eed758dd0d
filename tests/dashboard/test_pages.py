"""The dashboard's files are served by the gateway (and the all-in-one app), not by ingest."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from services.kit.runtime import Runtime
from services.main import Service, create_app


@contextlib.asynccontextmanager
async def client_of(runtime: Runtime, service: Service) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime=runtime, service=service)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as c:
            yield c


async def test_the_gateway_serves_the_pages_under_a_same_origin_policy(runtime: Runtime) -> None:
    async with client_of(runtime, "gateway") as client:
        moved = await client.get("/dashboard")
        assert (moved.status_code, moved.headers["location"]) == (308, "/dashboard/")
        page = await client.get("/dashboard/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<html lang="id">' in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "connect-src 'self'" in policy
        library = await client.get("/dashboard/vendor/plot-0.6.17.umd.min.js")
        assert library.status_code == 200
        assert library.text.startswith("// @observablehq/plot v0.6.17")


async def test_the_all_in_one_app_serves_them_and_ingest_does_not(runtime: Runtime) -> None:
    async with client_of(runtime, "all") as client:
        assert (await client.get("/dashboard/app.js")).status_code == 200
        assert (await client.get("/dashboard/region.js")).status_code == 200
    async with client_of(runtime, "ingest") as client:
        assert (await client.get("/dashboard/")).status_code == 404


async def test_the_map_and_its_boundaries_are_served_with_the_pages(runtime: Runtime) -> None:
    async with client_of(runtime, "gateway") as client:
        assert (await client.get("/dashboard/map.js")).status_code == 200
        shapes = await client.get("/dashboard/data/kabkota.json")
        assert shapes.status_code == 200
        assert "default-src 'none'" in shapes.headers["content-security-policy"]
        assert shapes.headers["content-encoding"] == "gzip"  # httpx asks for it
        assert shapes.num_bytes_downloaded < 100_000
        body = shapes.json()
        assert body["type"] == "FeatureCollection"
        properties = [feature["properties"] for feature in body["features"]]
        assert {"code": "32.71", "name": "Kota Bogor"} in properties
        licence = await client.get("/dashboard/data/LICENSE")
        assert "Copyright (c) 2024 Ardian Saputra Hasibuan" in licence.text
