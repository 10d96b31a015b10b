"""Alembic environment; everything is configured by tenantry.db.migrations."""

from tenantry.db.alembic_env import run

run()
