"""Upgrading a database that already holds rows, revision by revision, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, MetaData, Table, select
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.schemas import master_schema
from tenantry.services import schema_ops
from tests.conftest import DbFactory


def test_master_0002_fills_new_columns_of_existing_rows(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = master_schema()
    engine = engines(new_database("master"))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", target="0001", acting_app="tenantry", owner="tenantry")
        old = MetaData()
        stores = Table("stores", old, autoload_with=conn)
        jobs = Table("provisioning_jobs", old, autoload_with=conn)
        now = datetime.now(UTC).replace(tzinfo=None)
        store_id = uuid.uuid4().hex  # reflected CHAR(32) or native UUID: hex suits both
        store_values: dict[str, object] = {c.name: None for c in stores.columns}
        store_values.update(
            id=store_id,
            name="Old",
            slug="old-shop",
            database_status="active",
            subscription_plan="free",
            subscription_status="active",
            product_count=0,
            order_count=0,
            storage_used_bytes=0,
            api_calls_month=0,
            is_active=True,
            is_published=False,
            created_at=now,
            updated_at=now,
        )
        conn.execute(stores.insert().values(store_values))
        conn.execute(
            jobs.insert().values(
                id=uuid.uuid4().hex,
                store_id=store_id,
                mode="create_new",
                status="completed",
                progress=100,
                tables_created=15,
                total_tables=15,
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        )
    with engine.begin() as conn:
        result = schema_ops.migrate(conn, spec, "m", acting_app="tenantry", owner="tenantry")
    assert result.from_revision == "0001"
    assert result.to_revision == migrations.head(spec)
    with engine.connect() as conn:
        assert migrations.drift(conn, spec) == []
        new = MetaData()
        stores = Table("stores", new, autoload_with=conn)
        jobs = Table("provisioning_jobs", new, autoload_with=conn)
        assert conn.execute(select(stores.c.connection_version)).scalar_one() == 0
        assert not conn.execute(select(jobs.c.database_created)).scalar_one()
