"""The callers of the authorization matrices: one key per role and scope, for Kota Bogor."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.service import create_key
from services.models import Agency, AgencyKind, Assessment, AssessmentAssignment

ROLES = (
    "anonymous",
    "super-app:own",
    "super-app:foreign",
    "region-operator:own",
    "region-operator:foreign",
    "assessor:assigned",
    "assessor:unassigned",
    "ministry-admin",
)
OWN, FOREIGN = "32.71", "32.16"


@dataclass
class World:
    session: AsyncSession
    headers: dict[str, dict[str, str]]
    key_ids: dict[str, uuid.UUID]

    async def assessment(self, state: str, framework: str = "spbe-2020") -> Assessment:
        """A Kota Bogor 2024 assessment in ``state``, assigned to the assigned assessor."""
        assessment = Assessment(region_code=OWN, framework_id=framework, period=2024, state=state)
        self.session.add(assessment)
        await self.session.flush()
        self.session.add(
            AssessmentAssignment(
                assessment_id=assessment.id, key_id=self.key_ids["assessor:assigned"]
            )
        )
        await self.session.commit()
        return assessment

    async def agency(self, name: str = "Dinas Komunikasi dan Informatika") -> Agency:
        """An agency (OPD) of Kota Bogor."""
        agency = Agency(region_code=OWN, name=name, short_name="Diskominfo", kind=AgencyKind.DINAS)
        self.session.add(agency)
        await self.session.commit()
        return agency

    async def internal(self, state: str, agency: Agency | None = None) -> Assessment:
        """An internal Kota Bogor 2024 SPBE assessment of an agency, in ``state``."""
        agency = agency or await self.agency()
        assessment = Assessment(
            region_code=OWN, framework_id="spbe-2020", period=2024, state=state, agency_id=agency.id
        )
        self.session.add(assessment)
        await self.session.commit()
        return assessment


async def make_world(session: AsyncSession) -> World:
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    key_ids: dict[str, uuid.UUID] = {}
    for role in ROLES[1:]:
        kind, _, scope = role.partition(":")
        regions = {"own": [OWN], "foreign": [FOREIGN]}.get(scope, [])
        key, secret = await create_key(session, name=role, role=kind, regions=regions)
        headers[role] = {"Authorization": f"Bearer {secret}"}
        key_ids[role] = key.id
    await session.commit()
    return World(session, headers, key_ids)
