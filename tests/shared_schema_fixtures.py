"""A registered PostgreSQL server and a shared database of the test's own for shared-schema
stores; the database, its pool login and its stores' tenant roles are dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine
from tenantry.db.master.models import IntegrationConfig, ProvisioningJob, ProvisioningMode
from tenantry.db.shared_schemas import pool_login
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform
from tests.conftest import require_server


@dataclass(frozen=True)
class SharedDb:
    """The registered server's name and the shared database's name (``server/database``)."""

    server: str
    database: str

    @property
    def target(self) -> str:
        """What ``--shared`` takes."""
        return f"{self.server}/{self.database}"


def drop_shared(platform: Platform, database: str) -> None:
    """Drop shared database ``database``, its pool login and the tenant roles of master's
    shared-schema stores."""
    from tests.services.test_moves import admin_url

    with platform.sessions() as session:
        roles = {
            str(c.config_data["role"])
            for c in session.scalars(select(IntegrationConfig))
            if c.db_schema and c.config_data.get("role")
        }
        # Roles of shared provisioning jobs that did not complete (killed, failed).
        roles |= {
            str(j.destination["role"])
            for j in session.scalars(
                select(ProvisioningJob).where(
                    ProvisioningJob.mode == ProvisioningMode.CREATE_SHARED
                )
            )
            if j.destination and j.destination.get("role")
        }
    admin = parse_url(admin_url("postgresql"))
    drop_database(admin.set(database=database))
    engine = make_engine(admin.set(database="postgres"), pooled=False)
    try:
        with engine.connect() as conn:
            for role in [*roles, pool_login(database)]:
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            conn.commit()
    finally:
        engine.dispose()


@pytest.fixture
def shared_db(platform: Platform) -> Iterator[SharedDb]:
    """The local PostgreSQL server registered as ``pgs`` and a fresh shared database name
    on it (created by the first shared provisioning)."""
    from tests.services.test_moves import register

    require_server("postgresql")
    register(platform, "pgs", "postgresql")
    database = f"tsh_{uuid.uuid4().hex[:10]}"
    yield SharedDb("pgs", database)
    platform.router.dispose_all()
    drop_shared(platform, database)
