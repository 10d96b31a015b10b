"""Removing a server that holds thousands of stores' databases is refused with their count and
the first few slugs, counted by master (not every slug read)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from tenantry.db import migrations
from tenantry.db.master.models import IntegrationConfig
from tenantry.errors import Conflict
from tenantry.runtime import Platform
from tenantry.services import servers
from tests.conftest import require_server
from tests.master_rows import seed_stores, slug_of
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import register

__all__ = ["platform", "settings"]

STORES = 1_000


def test_removing_a_full_server_names_a_few_stores_and_counts_them_all(platform: Platform) -> None:
    require_server("postgresql")
    register(platform, "pg-full", "postgresql")
    head = migrations.head(platform.tenant_spec)
    assert head is not None
    seed_stores(platform.sessions, STORES, head=head, box=platform.box)
    with platform.sessions.begin() as session:
        server = servers.get_server(session, "pg-full")
        session.execute(update(IntegrationConfig).values(database_server_id=server.id))

    with platform.sessions.begin() as session, pytest.raises(Conflict) as refused:
        servers.remove_server(session, "pg-full", actor="cli:test")

    named = ", ".join(slug_of(n) for n in range(servers.NAMED_STORES))
    assert refused.value.message == (
        f"server 'pg-full' holds the databases of {STORES} store(s): {named} and "
        f"{STORES - servers.NAMED_STORES} more."
    )
    with platform.sessions() as session:  # still registered
        assert servers.get_server(session, "pg-full").name == "pg-full"
