"""All tables, on one metadata and one Alembic history."""

from services.models.base import Base
from services.models.region import REGION_KINDS, Region

__all__ = ["REGION_KINDS", "Base", "Region"]
