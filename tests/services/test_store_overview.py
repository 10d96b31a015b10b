"""The console's store list read from master on SQLite, PostgreSQL and MariaDB: search by slug
or name (any case, LIKE's wildcards taken literally), status filter (``pending``: never
provisioned), pages, each store's server and last good backup, and servers' store counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tenantry.crypto import SecretBox
from tenantry.db.master.models import (
    Backup,
    BackupStatus,
    DatabaseServer,
    IntegrationConfig,
    Operation,
    OperationKind,
    OperationStatus,
    Store,
)
from tenantry.runtime import Platform
from tenantry.services import servers, stores
from tenantry.services.server_loads import server_loads
from tenantry.services.store_overview import running_operation, search_stores
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]


def _backup(store: Store, status: str, finished: datetime) -> Backup:
    return Backup(
        role="tenant",
        store_id=store.id,
        slug=store.slug,
        engine="sqlite",
        database=f"{store.slug}.db",
        status=status,
        storage="local",
        artifact_key=f"t/{uuid.uuid4().hex}",
        manifest_key=f"t/{uuid.uuid4().hex}",
        row_counts={},
        started_at=finished,
        finished_at=finished,
    )


def test_search_filter_page_and_what_each_row_shows(backend_platform: Platform) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    box: SecretBox = backend_platform.box
    with backend_platform.writer_sessions.begin() as session:
        made = {
            slug: stores.create_store(session, slug=slug, name=name, actor="t")
            for slug, name in (
                ("north-shop", "North Outfitters"),
                ("south-shop", "South 100% Cotton"),
                ("east-shop", "East_Side"),
                ("west-shop", "West"),
            )
        }
        session.flush()
        server = DatabaseServer(
            name="pg-1",
            engine="postgresql",
            host="db.example",
            port=5432,
            admin_url_encrypted=box.seal("postgresql://admin:pw@db.example/postgres"),
        )
        session.add(server)
        session.flush()
        made["north-shop"].database_status = "active"
        session.add(
            IntegrationConfig(
                store_id=made["north-shop"].id,
                integration_type="database",
                database_server_id=server.id,
                config_data={"engine": "postgresql", "host": "db.example"},
                is_active=True,
            )
        )
        session.add(
            IntegrationConfig(
                store_id=made["west-shop"].id,
                integration_type="database",
                config_data={"engine": "sqlite", "path": "/x/west.db"},
                is_active=True,
            )
        )
        made["west-shop"].database_status = "active"
        session.add(_backup(made["north-shop"], BackupStatus.STORED, now - timedelta(hours=5)))
        session.add(_backup(made["north-shop"], BackupStatus.VERIFIED, now - timedelta(hours=2)))
        # A failed backup, newer, is not a backup at all.
        session.add(_backup(made["north-shop"], BackupStatus.FAILED, now - timedelta(hours=1)))
        # east-shop has a provisioning job running; south-shop has none (pending).
        session.add(
            Operation(
                kind=OperationKind.BACKUP,
                store_id=made["east-shop"].id,
                status=OperationStatus.RUNNING,
                requested_by="t",
            )
        )
        east_id = made["east-shop"].id

    with backend_platform.sessions() as session:
        rows, total = search_stores(session)
        assert total == 4
        assert [r.store.slug for r in rows] == [
            "east-shop",
            "north-shop",
            "south-shop",
            "west-shop",
        ]
        by_slug = {r.store.slug: r for r in rows}
        assert by_slug["north-shop"].server == "pg-1"
        assert by_slug["west-shop"].server == "sqlite"
        assert by_slug["south-shop"].server is None
        last = by_slug["north-shop"].last_backup_at
        assert last is not None
        assert last.replace(tzinfo=UTC) == now - timedelta(hours=2)
        assert by_slug["west-shop"].last_backup_at is None
        assert by_slug["south-shop"].status == "pending"
        assert by_slug["north-shop"].status == "active"

        # Any case, slug or name; % and _ are literal characters, not wildcards.
        assert [r.store.slug for r in search_stores(session, search="NORTH")[0]] == ["north-shop"]
        assert [r.store.slug for r in search_stores(session, search="outfit")[0]] == ["north-shop"]
        assert [r.store.slug for r in search_stores(session, search="100%")[0]] == ["south-shop"]
        assert [r.store.slug for r in search_stores(session, search="t_s")[0]] == ["east-shop"]
        assert search_stores(session, search="%")[1] == 1

        assert [r.store.slug for r in search_stores(session, status="active")[0]] == [
            "north-shop",
            "west-shop",
        ]
        pending, count = search_stores(session, status="pending")
        assert count == 2  # never provisioned: stored as provisioning
        assert {r.status for r in pending} == {"pending"}

        page, count = search_stores(session, limit=3, offset=3)
        assert count == 4
        assert [r.store.slug for r in page] == ["west-shop"]

        running = running_operation(session, east_id)
        assert running is not None
        assert running.kind == OperationKind.BACKUP

        loads = server_loads(session, servers.list_servers(session))
        assert [(load.server.name, load.tenants) for load in loads] == [("pg-1", 1)]
