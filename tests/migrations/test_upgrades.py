"""Upgrading a database that already holds rows, revision by revision, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import JSON, Connection, Engine, MetaData, Table, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from tenantry.db import migrations
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema
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
        store_id = _old_store(conn, stores, now)
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


def _webhook_row(app_id: str, event_id: str) -> dict[str, object]:
    return {
        "id": uuid.uuid4().hex,
        "app_id": app_id,
        "processor": "stripe",
        "event_id": event_id,
        "event_type": "payment_intent.succeeded",
        "payload": f'{{"id": "{event_id}"}}',
        "status": "processed",
        "attempts": 1,
        "received_at": datetime.now(UTC).replace(tzinfo=None),
    }


def test_billing_0003_makes_webhook_events_unique_per_app_keeping_rows(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = billing_schema()
    engine = engines(new_database("billing"))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "b", target="0002", acting_app="tenantry", owner="tenantry")
        webhooks = Table("billing_webhooks", MetaData(), autoload_with=conn)
        conn.execute(
            webhooks.insert(),
            [_webhook_row("acme", f"evt_{n}") for n in range(3)]
            + [_webhook_row("globex", "evt_g")],
        )
        # Under 0002 the same event could not be stored for a second app.
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(webhooks.insert().values(_webhook_row("globex", "evt_0")))
    with engine.begin() as conn:
        result = schema_ops.migrate(conn, spec, "b", acting_app="tenantry", owner="tenantry")
    assert result.from_revision == "0002"
    assert "0003" in result.applied
    with engine.begin() as conn:
        assert migrations.drift(conn, spec) == []
        webhooks = Table("billing_webhooks", MetaData(), autoload_with=conn)
        kept = conn.execute(select(webhooks.c.app_id, webhooks.c.event_id)).all()
        assert sorted(kept) == [
            ("acme", "evt_0"),
            ("acme", "evt_1"),
            ("acme", "evt_2"),
            ("globex", "evt_g"),
        ]
        conn.execute(webhooks.insert().values(_webhook_row("globex", "evt_0")))
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(webhooks.insert().values(_webhook_row("acme", "evt_0")))


def _downgrade(engine: Engine, spec: SchemaSpec, target: str) -> None:
    def run() -> None:
        with engine.begin() as conn:
            command.downgrade(migrations.alembic_config(spec, connection=conn), target)

    # On a thread of its own: a revision that raises leaves Alembic's `op` proxy set on the
    # thread that ran it, and later tests expect none on theirs.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(run).result()


def test_billing_0003_downgrades_unless_an_event_is_stored_for_two_apps(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = billing_schema()
    engine = engines(new_database("billing"))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "b", target="0003", acting_app="tenantry", owner="tenantry")
        webhooks = Table("billing_webhooks", MetaData(), autoload_with=conn)
        conn.execute(
            webhooks.insert(),
            [_webhook_row(app, "evt_both") for app in ("acme", "globex")],
        )
    with pytest.raises(RuntimeError, match="evt_both of stripe is stored for several apps"):
        _downgrade(engine, spec, "0002")
    with engine.begin() as conn:
        assert migrations.current(conn, spec) == "0003"
        webhooks = Table("billing_webhooks", MetaData(), autoload_with=conn)
        conn.execute(webhooks.delete().where(webhooks.c.app_id == "globex"))
    _downgrade(engine, spec, "0002")
    with engine.begin() as conn:
        assert migrations.current(conn, spec) == "0002"
        webhooks = Table("billing_webhooks", MetaData(), autoload_with=conn)
        assert conn.execute(select(webhooks.c.app_id)).scalars().all() == ["acme"]
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(webhooks.insert().values(_webhook_row("globex", "evt_both")))


@pytest.mark.parametrize("url", ["sqlite:///b.db", "postgresql://h/b", "mysql+pymysql://h/b"])
def test_billing_0003_prints_its_sql_without_a_database(url: str) -> None:
    sql = migrations.upgrade_sql(billing_schema(), make_url(url), "0002", "0003")
    assert "uq_billing_webhooks_app_id_processor_event_id" in sql
    assert "UNIQUE (app_id, processor, event_id)" in sql


def test_master_0009_moves_every_provisioning_job_into_operations_keeping_history(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = master_schema()
    engine = engines(new_database("master"))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", target="0008", acting_app="tenantry", owner="tenantry")
        old = MetaData()
        stores = Table("stores", old, autoload_with=conn)
        jobs = Table("provisioning_jobs", old, autoload_with=conn)
        now = datetime.now(UTC).replace(tzinfo=None)
        store_id = _old_store(conn, stores, now, connection_version=0)
        common = {
            "store_id": store_id,
            "mode": "create_new",
            "database_created": False,
            "created_at": now,
            "updated_at": now,
        }
        done, running = uuid.uuid4(), uuid.uuid4()
        conn.execute(
            jobs.insert().values(
                id=done.hex,
                status="completed",
                step="done",
                progress=100,
                tables_created=15,
                total_tables=15,
                attempts=1,
                message="the store database is ready",
                finished_at=now,
                **common,
            )
        )
        conn.execute(
            jobs.insert().values(
                id=running.hex,
                status="running",
                step="create_tables",
                progress=40,
                tables_created=6,
                total_tables=15,
                attempts=2,
                worker_id="host:1:ab",
                lease_expires_at=now,
                **common,
            )
        )
    with engine.begin() as conn:
        result = schema_ops.migrate(conn, spec, "m", acting_app="tenantry", owner="tenantry")
    assert result.to_revision == migrations.head(spec)
    with engine.connect() as conn:
        assert migrations.drift(conn, spec) == []
        new = MetaData()
        operations = Table("operations", new, autoload_with=conn)
        jobs = Table("provisioning_jobs", new, autoload_with=conn)
        assert "status" not in jobs.c
        assert "lease_expires_at" not in jobs.c
        rows = {
            uuid.UUID(str(r.id)): r
            for r in conn.execute(select(operations).where(operations.c.kind == "provision"))
        }
        assert set(rows) == {done, running}
        assert (rows[done].status, rows[done].step, rows[done].target) == (
            "succeeded",
            "done",
            "old-shop",
        )
        assert (rows[done].progress_current, rows[done].progress_total) == (15, 15)
        assert rows[done].progress_unit == "tables"
        assert rows[done].message == "the store database is ready"
        assert rows[done].finished_at is not None
        assert (rows[running].status, rows[running].attempts) == ("running", 2)
        assert rows[running].lease_holder == "host:1:ab"
        assert rows[running].lease_expires_at is not None
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 2
    # Going back puts every job's lifecycle back in its own row, in provisioning's words.
    _downgrade(engine, spec, "0008")
    with engine.connect() as conn:
        assert migrations.current(conn, spec) == "0008"
        jobs = Table("provisioning_jobs", MetaData(), autoload_with=conn)
        back = {uuid.UUID(str(r.id)): r for r in conn.execute(select(jobs))}
        assert (back[done].status, back[done].tables_created, back[done].total_tables) == (
            "completed",
            15,
            15,
        )
        assert (back[running].status, back[running].worker_id) == ("running", "host:1:ab")
        operations = Table("operations", MetaData(), autoload_with=conn)
        assert conn.execute(select(func.count()).select_from(operations)).scalar_one() == 0


def _old_store(conn: Connection, stores: Table, now: datetime, **columns: object) -> str:
    """Insert a store row as an older master revision holds it; its id (hex: a reflected
    CHAR(32) and a native UUID both take it)."""
    store_id = uuid.uuid4().hex
    values: dict[str, object] = {c.name: None for c in stores.columns}
    values.update(
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
        **columns,
    )
    conn.execute(stores.insert().values(values))
    return store_id


def test_master_0010_moves_every_fleet_run_into_operations_keeping_history(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = master_schema()
    engine = engines(new_database("master"))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", target="0009", acting_app="tenantry", owner="tenantry")
        old = MetaData()
        runs = Table("fleet_runs", old, autoload_with=conn)
        results = Table("fleet_results", old, autoload_with=conn)
        locks = Table("fleet_locks", old, autoload_with=conn)
        now = datetime.now(UTC).replace(tzinfo=None)
        done, dead, running = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        # MariaDB's JSON reflects as text: the document goes in as its text there.
        options = {} if isinstance(runs.c.options.type, JSON) else "{}"
        common = {"role": "tenant", "target": "c002", "concurrency": 4, "options": options}
        conn.execute(
            runs.insert(),
            [
                {
                    "id": done.hex,
                    "status": "succeeded",
                    "holder": "host:1",
                    "total": 3,
                    "migrated": 2,
                    "current": 1,
                    "failed": 0,
                    "started_at": now,
                    "finished_at": now,
                    **common,
                },
                {
                    "id": dead.hex,
                    "status": "abandoned",
                    "holder": "host:2",
                    "total": 3,
                    "migrated": 1,
                    "current": 0,
                    "failed": 0,
                    "started_at": now,
                    "finished_at": now,
                    **common,
                },
                {
                    "id": running.hex,
                    "status": "running",
                    "holder": "host:3",
                    "total": 3,
                    "migrated": 0,
                    "current": 0,
                    "failed": 1,
                    "started_at": now,
                    "finished_at": None,
                    **common,
                },
            ],
        )
        conn.execute(
            results.insert().values(
                id=uuid.uuid4().hex,
                run_id=done.hex,
                store_id=uuid.uuid4().hex,
                slug="old-shop",
                status="migrated",
                duration_ms=5,
                finished_at=now,
            )
        )
        conn.execute(
            locks.insert(),
            [
                {"role": "tenant", "run_id": running.hex, "holder": "host:3", "expires_at": now},
                {
                    "role": "backup-scheduler",
                    "run_id": uuid.uuid4().hex,
                    "holder": "host:4",
                    "expires_at": now,
                },
            ],
        )
    with engine.begin() as conn:
        result = schema_ops.migrate(conn, spec, "m", acting_app="tenantry", owner="tenantry")
    assert result.to_revision == migrations.head(spec)
    with engine.connect() as conn:
        assert migrations.drift(conn, spec) == []
        new = MetaData()
        operations = Table("operations", new, autoload_with=conn)
        runs = Table("fleet_runs", new, autoload_with=conn)
        assert "status" not in runs.c
        assert "holder" not in runs.c
        assert "fleet_locks" not in new.tables
        rows = {
            uuid.UUID(str(r.id)): r
            for r in conn.execute(select(operations).where(operations.c.kind == "fleet_run"))
        }
        assert set(rows) == {done, dead, running}
        assert (rows[done].status, rows[done].step, rows[done].target) == (
            "succeeded",
            "done",
            "tenant",
        )
        assert (rows[done].progress_current, rows[done].progress_total) == (3, 3)
        assert rows[done].progress_unit == "tenants"
        assert (rows[dead].status, rows[dead].step) == ("failed", "abandoned")
        assert rows[dead].error is not None
        assert (rows[running].status, rows[running].lease_holder) == ("running", "host:3")
        assert rows[running].lease_expires_at is not None
        assert rows[running].progress_current == 1
        kept = {uuid.UUID(str(r.id)): r for r in conn.execute(select(runs))}
        assert (kept[done].target, kept[done].migrated, kept[done].skipped) == ("c002", 2, 0)
        results = Table("fleet_results", new, autoload_with=conn)
        assert conn.execute(select(func.count()).select_from(results)).scalar_one() == 1
        oplocks = Table("operation_locks", new, autoload_with=conn)
        held = {r.name: r for r in conn.execute(select(oplocks))}
        assert set(held) == {"fleet:tenant", "backup-scheduler"}
        assert uuid.UUID(str(held["fleet:tenant"].operation_id)) == running
    # Going back puts every run's lifecycle back in its own row, in the old words.
    _downgrade(engine, spec, "0009")
    with engine.connect() as conn:
        assert migrations.current(conn, spec) == "0009"
        old = MetaData()
        runs = Table("fleet_runs", old, autoload_with=conn)
        back = {uuid.UUID(str(r.id)): r for r in conn.execute(select(runs))}
        assert (back[done].status, back[done].holder, back[done].total) == (
            "succeeded",
            "host:1",
            3,
        )
        assert back[dead].status == "abandoned"
        assert (back[running].status, back[running].finished_at) == ("running", None)
        assert "skipped" not in runs.c
        locks = Table("fleet_locks", old, autoload_with=conn)
        back_locks = {r.role: uuid.UUID(str(r.run_id)) for r in conn.execute(select(locks))}
        assert set(back_locks) == {"tenant", "backup-scheduler"}
        assert back_locks["tenant"] == running
        results = Table("fleet_results", old, autoload_with=conn)
        assert conn.execute(select(func.count()).select_from(results)).scalar_one() == 1
        operations = Table("operations", old, autoload_with=conn)
        assert conn.execute(select(func.count()).select_from(operations)).scalar_one() == 0


@pytest.mark.parametrize("url", ["sqlite:///m.db", "postgresql://h/m", "mysql+pymysql://h/m"])
def test_master_0010_prints_its_sql_without_a_database(url: str) -> None:
    sql = migrations.upgrade_sql(master_schema(), make_url(url), "0009", "0010")
    assert "INSERT INTO operations" in sql
    assert "fk_fleet_runs_id_operations" in sql
    assert "DROP TABLE fleet_locks" in sql


def test_master_0012_moves_every_store_move_into_operations_keeping_history(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = master_schema()
    engine = engines(new_database("master"))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", target="0011", acting_app="tenantry", owner="tenantry")
        old = MetaData()
        stores = Table("stores", old, autoload_with=conn)
        moves = Table("store_moves", old, autoload_with=conn)
        now = datetime.now(UTC).replace(tzinfo=None)
        store_id = _old_store(conn, stores, now, connection_version=0)
        common = {
            "store_id": store_id,
            "slug": "old-shop",
            "from_config_id": uuid.uuid4().hex,
            "to_server": "pg",
            # Reflected, the JSON column is text on MariaDB: a document every backend takes.
            "details": "{}",
            "started_at": now,
        }
        done, failed = uuid.uuid4(), uuid.uuid4()
        conn.execute(
            moves.insert().values(
                id=done.hex,
                status="completed",
                step="done",
                progress=100,
                to_config_id=uuid.uuid4().hex,
                keep_source_until=now,
                finished_at=now,
                **common,
            )
        )
        conn.execute(
            moves.insert().values(
                id=failed.hex,
                status="rolled_back",
                step="rolled_back",
                progress=40,
                error="the copy does not match the source",
                finished_at=now,
                **common,
            )
        )
    with engine.begin() as conn:
        result = schema_ops.migrate(conn, spec, "m", acting_app="tenantry", owner="tenantry")
    assert result.to_revision == migrations.head(spec)
    with engine.connect() as conn:
        assert migrations.drift(conn, spec) == []
        new = MetaData()
        operations = Table("operations", new, autoload_with=conn)
        moves = Table("store_moves", new, autoload_with=conn)
        assert {"status", "step", "error", "slug", "store_id", "started_at"}.isdisjoint(
            moves.c.keys()
        )
        rows = {
            uuid.UUID(str(r.id)): r
            for r in conn.execute(select(operations).where(operations.c.kind == "move"))
        }
        assert set(rows) == {done, failed}
        assert (rows[done].status, rows[done].step, rows[done].target) == (
            "succeeded",
            "done",
            "old-shop",
        )
        assert uuid.UUID(str(rows[done].store_id)) == uuid.UUID(store_id)
        assert rows[done].started_at is not None
        assert rows[done].finished_at is not None
        assert (rows[failed].status, rows[failed].error) == (
            "failed",
            "the copy does not match the source",
        )
        kept = {uuid.UUID(str(r.id)): r for r in conn.execute(select(moves))}
        assert (kept[done].progress, kept[done].to_server) == (100, "pg")
        assert kept[done].keep_source_until is not None
    # Going back puts every move's lifecycle back in its own row, in a move's words.
    _downgrade(engine, spec, "0011")
    with engine.connect() as conn:
        assert migrations.current(conn, spec) == "0011"
        moves = Table("store_moves", MetaData(), autoload_with=conn)
        back = {uuid.UUID(str(r.id)): r for r in conn.execute(select(moves))}
        assert (back[done].status, back[done].slug, back[done].step) == (
            "completed",
            "old-shop",
            "done",
        )
        assert uuid.UUID(str(back[done].store_id)) == uuid.UUID(store_id)
        assert (back[failed].status, back[failed].error) == (
            "rolled_back",
            "the copy does not match the source",
        )
        assert back[failed].started_at is not None
        operations = Table("operations", MetaData(), autoload_with=conn)
        assert conn.execute(select(func.count()).select_from(operations)).scalar_one() == 0


@pytest.mark.parametrize("url", ["sqlite:///m.db", "postgresql://h/m", "mysql+pymysql://h/m"])
def test_master_0012_prints_its_sql_without_a_database(url: str) -> None:
    sql = migrations.upgrade_sql(master_schema(), make_url(url), "0011", "0012")
    assert "INSERT INTO operations" in sql
    assert "fk_store_moves_id_operations" in sql
