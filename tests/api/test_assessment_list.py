"""``GET /v1/assessments`` filtered by place: unknown places are 404, known ones with nothing
to show an empty page, and a page with rows costs no lookup of the place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from services.demo import service as demo
from services.kit.runtime import Runtime
from tests.conftest import app_client

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements the app's engine runs meanwhile."""
    ran: list[str] = []

    def record(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        ran.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield ran
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", record)


async def test_places_are_checked_only_when_the_page_cannot_show_them(live: Runtime) -> None:
    await demo.load(live)
    async with app_client(live) as client:
        params = {"framework": "spbe-2020", "period": 2024}
        found = await client.get("/v1/assessments", params={**params, "region": "32.71"})
        assert found.status_code == 200, found.text
        assert [item["region"]["code"] for item in found.json()["items"]] == ["32.71"]
        with statements(live) as ran:
            again = await client.get("/v1/assessments", params={**params, "region": "32.71"})
        assert again.json() == found.json()
        assert not [sql for sql in ran if "FROM region" in sql and "assessment" not in sql]

        empty = await client.get("/v1/assessments", params={**params, "region": "32.01"})
        assert (empty.status_code, empty.json()["items"]) == (200, [])
        for place in (
            {"region": "99.99"},
            {"province": "99"},
            {"province": "32", "region": "99.99"},
        ):
            unknown = await client.get("/v1/assessments", params={**params, **place})
            assert unknown.status_code == 404, unknown.text
        # An unknown region is reported before a bad state, as it always was.
        both = await client.get("/v1/assessments", params={"region": "99.99", "state": "nope"})
        assert both.status_code == 404, both.text
        assert (await client.get("/v1/assessments", params={"state": "nope"})).status_code == 422
