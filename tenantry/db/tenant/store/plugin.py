"""The default tenant schema plug-in: an e-commerce store (seed 001 "Client DB")."""

from pathlib import Path

from tenantry.db.tenant.store.models import SCHEMA_NAME, metadata
from tenantry.db.tenant.store.seed import seed

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

__all__ = ["MIGRATIONS", "SCHEMA_NAME", "metadata", "seed"]
