"""Master 0011: every backup in the catalog gets the operation that took it, history kept; going
back deletes those operations and leaves the catalog as 0009 shows it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import JSON, Engine, MetaData, Table, func, select
from sqlalchemy.engine import URL, make_url

from tenantry.db import migrations
from tenantry.db.schemas import master_schema
from tenantry.services import schema_ops
from tests.conftest import DbFactory
from tests.migrations.test_upgrades import _downgrade


def _backup_row(status: str, now: datetime, **columns: object) -> dict[str, object]:
    backup_id = uuid.uuid4()
    row: dict[str, object] = {
        "id": backup_id.hex,
        "role": "billing",
        "store_id": None,
        "slug": None,
        "engine": "sqlite",
        "database": "billing.db",
        "status": status,
        "reason": "manual",
        "pinned": False,
        "storage": "local",
        "artifact_key": f"billing/{backup_id.hex}.db.zst",
        "manifest_key": f"billing/{backup_id.hex}.db.zst.manifest.json",
        "row_counts": {},
        "started_at": now - timedelta(minutes=5),
        "created_by": "cli",
        "raw_bytes": None,
        "size_bytes": None,
        "finished_at": None,
        "error": None,
    }
    row.update(columns)
    return row


def test_master_0011_records_an_operation_per_backup_keeping_history(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = master_schema()
    engine = engines(new_database("master"))
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    store_id = uuid.uuid4()
    rows = {
        "stored": _backup_row(
            "stored", now, raw_bytes=4096, size_bytes=900, finished_at=now, created_by="apikey:x"
        ),
        "failed": _backup_row("failed", now, error="pg_dump failed", finished_at=now),
        "running": _backup_row("running", now),
        "queued": _backup_row("queued", now, created_by="apikey:y"),
        "pruned": _backup_row(
            "pruned", now, role="tenant", slug="shop", store_id=store_id.hex, finished_at=now
        ),
    }
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", target="0009", acting_app="tenantry", owner="tenantry")
        backups = Table("backups", MetaData(), autoload_with=conn)
        if not isinstance(backups.c.row_counts.type, JSON):  # MariaDB's JSON is LONGTEXT
            for row in rows.values():
                row["row_counts"] = "{}"
        conn.execute(backups.insert(), list(rows.values()))
    with engine.begin() as conn:
        result = schema_ops.migrate(conn, spec, "m", acting_app="tenantry", owner="tenantry")
    assert "0011" in result.applied
    ids = {name: uuid.UUID(str(row["id"])) for name, row in rows.items()}
    with engine.connect() as conn:
        assert migrations.drift(conn, spec) == []
        operations = Table("operations", MetaData(), autoload_with=conn)
        found = {
            uuid.UUID(str(r.id)): r
            for r in conn.execute(select(operations).where(operations.c.kind == "backup"))
        }
    assert set(found) == set(ids.values())
    stored, failed = found[ids["stored"]], found[ids["failed"]]
    assert (stored.status, stored.step, stored.target) == ("succeeded", "done", "billing")
    assert (stored.progress_current, stored.progress_total, stored.progress_unit) == (
        4096,
        4096,
        "bytes",
    )
    assert stored.requested_by == "apikey:x"
    assert stored.started_at is not None
    assert stored.finished_at is not None
    assert (failed.status, failed.error) == ("failed", "pg_dump failed")
    running, queued = found[ids["running"]], found[ids["queued"]]
    # No live holder: the recovery sweep finds it stalled, cleans up and fails it.
    assert (running.status, running.lease_expires_at, running.attempts) == ("running", None, 1)
    assert (queued.status, queued.attempts, queued.started_at) == ("queued", 0, None)
    pruned = found[ids["pruned"]]
    assert (pruned.status, pruned.target) == ("succeeded", "store:shop")
    assert uuid.UUID(str(pruned.store_id)) == store_id

    # A take cancelled at 0011 leaves its catalog row as it was; going back says so there.
    with engine.begin() as conn:
        conn.execute(
            operations.update()
            .where(operations.c.id == ids["running"].hex)
            .values(status="cancelled", finished_at=now)
        )
    _downgrade(engine, spec, "0009")
    with engine.connect() as conn:
        assert migrations.current(conn, spec) == "0009"
        operations = Table("operations", MetaData(), autoload_with=conn)
        kinds = conn.execute(select(operations.c.kind)).scalars().all()
        assert "backup" not in kinds
        backups = Table("backups", MetaData(), autoload_with=conn)
        back = {uuid.UUID(str(r.id)): r for r in conn.execute(select(backups))}
        assert conn.execute(select(func.count()).select_from(backups)).scalar_one() == 5
    assert back[ids["stored"]].status == "stored"
    assert (back[ids["failed"]].status, back[ids["failed"]].error) == ("failed", "pg_dump failed")
    assert back[ids["running"]].status == "failed"
    assert "cancelled" in back[ids["running"]].error
    assert back[ids["queued"]].status == "queued"
    # Up again: the same history.
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", acting_app="tenantry", owner="tenantry")
        operations = Table("operations", MetaData(), autoload_with=conn)
        again = conn.execute(
            select(func.count()).select_from(operations).where(operations.c.kind == "backup")
        ).scalar_one()
    assert again == 5


def test_master_0011_prints_its_sql_without_a_database() -> None:
    for url in ("sqlite:///m.db", "postgresql://h/m", "mysql+pymysql://h/m"):
        sql = migrations.upgrade_sql(master_schema(), make_url(url), "0009", "0011")
        assert "INSERT INTO operations" in sql
        assert "FROM backups" in sql
