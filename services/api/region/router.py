from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from services.api.region.schemas import RegionOut, RegionPage
from services.domain.region import repository
from services.kit.db import DbSession
from services.kit.errors import NotFound
from services.kit.pagination import decode_cursor, encode_cursor
from services.models import RegionKind

router = APIRouter(prefix="/v1/regions", tags=["regions"])

REGION_CODE = r"^\d{2}(\.\d{2})?$"


@router.get("", response_model=RegionPage, summary="List provinces and kabupaten/kota")
async def list_regions(
    session: DbSession,
    kind: Annotated[RegionKind | None, Query(description="provinsi, kabupaten or kota")] = None,
    province: Annotated[
        str | None, Query(pattern=r"^\d{2}$", description="Province code, e.g. 32")
    ] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RegionPage:
    if province is not None:
        parent = await repository.get(session, province)
        if parent is None or parent.kind != "provinsi":
            raise NotFound(f"No province with code {province!r}.")
    after = decode_cursor(cursor, str)[0] if cursor else None
    rows = await repository.page(
        session, kind=kind, province=province, after=after, limit=limit + 1
    )
    items = [RegionOut.model_validate(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].code) if len(rows) > limit else None
    return RegionPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{code}",
    response_model=RegionOut,
    summary="One region by Kemendagri code",
    responses={404: {"description": "No region has this code"}},
)
async def get_region(
    session: DbSession,
    code: Annotated[str, Path(pattern=REGION_CODE, examples=["32.71"])],
) -> RegionOut:
    region = await repository.get(session, code)
    if region is None:
        raise NotFound(f"No region with Kemendagri code {code!r}.")
    return RegionOut.model_validate(region)
