"""Fleet migrations over real tenant databases on SQLite, PostgreSQL and MariaDB.

Each test builds a small tenant schema of its own (a ``products`` table, revision f001) in a
temp script directory, creates tenant databases at f001 on the backend, registers them as
active stores in master, then adds a revision and runs the fleet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.engine import URL

from tenantry.backup.storage import storage_for
from tenantry.db import checksums, migrations
from tenantry.db.engines import immediate_transaction, make_engine
from tenantry.db.identity import read_identity
from tenantry.db.locks import migration_lock
from tenantry.db.master.models import (
    Backup,
    BackupStatus,
    DatabaseStatus,
    FleetResult,
    FleetRun,
    FleetRunStatus,
    IntegrationConfig,
    Operation,
    OperationKind,
    OperationLock,
    Store,
    TenantOutcome,
)
from tenantry.db.schemas import Role, SchemaSpec
from tenantry.errors import Conflict
from tenantry.operations.fleet_queue import recover_run, run_queued_tenant, start_queued_run
from tenantry.operations.fleet_record import RunReport
from tenantry.operations.fleet_run import open_run, run_fleet
from tenantry.operations.fleet_verify import verify_fleet
from tenantry.operations.kit import OperationKit
from tenantry.operations.premigration import PreMigrationBackups
from tenantry.runtime import Platform
from tenantry.services import schema_ops
from tenantry.services.connections import split_url
from tenantry.services.fleet_migrate import MigrateOptions, Outcome, migrate_tenant
from tenantry.services.fleet_status import fleet_counts, fleet_status
from tenantry.services.fleet_targets import tenant_databases
from tests.conftest import DbFactory
from tests.platform_fixtures import platform, settings
from tests.revision_scripts import ENV_PY, revision_script

__all__ = ["platform", "settings"]

F001 = "    op.create_table('products', sa.Column('id', sa.Integer(), primary_key=True), " + (
    "sa.Column('name', sa.String(200), nullable=False))\n"
)
F002_NOTE = (
    "    op.add_column('products', sa.Column('note', sa.String(200), nullable=True))\n"
    "    op.create_index('ix_products_note', 'products', ['note'])\n"
)
F002_DROP = (
    "    with op.batch_alter_table('products') as batch_op:\n        batch_op.drop_column('name')\n"
)


def _metadata(*, note: bool = False, name: bool = True) -> MetaData:
    metadata = MetaData()
    columns: list[Column[object]] = [Column("id", Integer, primary_key=True)]
    if name:
        columns.append(Column("name", String(200), nullable=False))
    if note:
        columns.append(Column("note", String(200), nullable=True))
    table = Table("products", metadata, *columns)
    if note:
        Index("ix_products_note", table.c.note)
    return metadata


@dataclass
class Fleet:
    """A tenant schema in a temp directory and tenant databases registered in master."""

    platform: Platform
    path: Path
    spec: SchemaSpec
    urls: dict[str, URL] = field(default_factory=dict)

    def write(self, rev: str, down: str | None, body: str, doc: str = "revision") -> Path:
        """Add a revision file."""
        target = self.path / "versions" / f"{rev}_{doc.replace(' ', '_')}.py"
        target.write_text(revision_script(rev, down, body, doc))
        return target

    def new_spec(self, metadata: MetaData) -> SchemaSpec:
        """The same scripts (re-read: a new spec is a new cache entry) with ``metadata``."""
        self.spec = SchemaSpec(Role.TENANT, "fleetshop", metadata, self.path)
        return self.spec

    def run(self, **kwargs: object) -> RunReport:
        """``fleet migrate`` to head as the owner."""
        options = MigrateOptions(
            goal=migrations.head(self.spec),
            acting_app=str(kwargs.pop("acting_app", "tenantry")),
            owner="tenantry",
            allow_destructive=bool(kwargs.pop("allow_destructive", False)),
        )
        return run_fleet(
            self.platform.sessions,
            self.platform.box,
            self.spec,
            options,
            concurrency=3,
            actor="cli:test",
            **kwargs,  # type: ignore[arg-type]
        )

    def revision_of(self, slug: str) -> str | None:
        """The revision the tenant's database really is at."""
        engine = make_engine(self.urls[slug], pooled=False)
        try:
            with engine.connect() as conn:
                return migrations.current(conn, self.spec)
        finally:
            engine.dispose()

    def execute(self, slug: str, sql: str) -> None:
        """Run SQL on a tenant database (sabotage)."""
        engine = make_engine(self.urls[slug], pooled=False)
        try:
            with engine.begin() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()


@pytest.fixture
def tenants(platform: Platform, new_database: DbFactory, tmp_path: Path) -> Fleet:
    """Four tenant databases (t0…t3) at f001, registered as active stores."""
    path = tmp_path / "fleetshop"
    (path / "versions").mkdir(parents=True)
    (path / "env.py").write_text(ENV_PY)
    made = Fleet(platform, path, SchemaSpec(Role.TENANT, "fleetshop", _metadata(), path))
    made.write("f001", None, F001, "products")
    made.new_spec(_metadata())
    for i in range(4):
        slug = f"t{i}-{uuid.uuid4().hex[:6]}"
        url = new_database(f"fleet{i}")
        engine = make_engine(url, pooled=False)
        try:
            with engine.begin() as conn:
                schema_ops.migrate(conn, made.spec, "t", acting_app="tenantry", owner="tenantry")
                identity = read_identity(conn)
        finally:
            engine.dispose()
        assert identity is not None
        data, secret = split_url(platform.box, url)
        with platform.sessions.begin() as session:
            store = Store(
                name=slug,
                slug=slug,
                database_status=DatabaseStatus.ACTIVE,
                schema_revision="f001",
            )
            session.add(store)
            session.flush()
            session.add(
                IntegrationConfig(
                    store_id=store.id,
                    integration_type=data["engine"],
                    config_data=data,
                    secret_encrypted=secret,
                    instance_id=identity.instance_id,
                    is_active=True,
                )
            )
        made.urls[slug] = url
    return made


def _slugs(f: Fleet) -> list[str]:
    return sorted(f.urls)


def test_one_broken_tenant_fails_alone_and_is_accounted_for(tenants: Fleet) -> None:
    f = tenants
    broken = _slugs(f)[1]
    f.execute(broken, "DROP TABLE products")  # sabotage before the rollout
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))

    report = f.run()

    assert report.status == FleetRunStatus.FAILED
    by_slug = {o.slug: o for o in report.outcomes}
    assert set(by_slug) == set(f.urls)  # nobody skipped
    assert by_slug[broken].status == TenantOutcome.FAILED
    assert "products" in (by_slug[broken].error or "")
    for slug in _slugs(f):
        if slug != broken:
            assert by_slug[slug].status == TenantOutcome.MIGRATED
            assert (by_slug[slug].from_revision, by_slug[slug].to_revision) == ("f001", "f002")
            assert f.revision_of(slug) == "f002"
    assert f.revision_of(broken) == "f001"  # its failed revision left nothing half-done

    with f.platform.sessions() as session:
        results = session.scalars(
            select(FleetResult).where(FleetResult.run_id == report.run_id)
        ).all()
        run = session.get(FleetRun, report.run_id)
        revisions = dict(session.execute(select(Store.slug, Store.schema_revision)).all())
        st = fleet_status(session, f.spec)
        counts = fleet_counts(session, f.spec)
    assert {r.slug: r.status for r in results} == {o.slug: o.status for o in report.outcomes}
    assert run is not None
    assert (run.migrated, run.failed, run.status) == (3, 1, "failed")
    assert revisions[broken] == "f001"
    assert all(revisions[s] == "f002" for s in _slugs(f) if s != broken)
    assert st.lagging == [broken]
    assert [x["slug"] for x in st.failed] == [broken]
    assert st.per_revision == {"f002": 3, "f001": 1}
    # The metrics' aggregate counts say the same.
    assert (counts.per_revision, counts.lagging, counts.failed) == (st.per_revision, 1, 1)

    again = f.run()  # the migrated ones are skipped cheaply; the broken one still fails
    assert again.counts == {"current": 3, "failed": 1}


class Interrupted(Exception):
    """What a Ctrl-C in the caller's progress callback stands for."""


def test_an_interrupted_run_starts_no_new_tenant_and_releases_its_lock(tenants: Fleet) -> None:
    f = tenants
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    seen: list[Outcome] = []

    def stop_after_first(outcome: Outcome) -> None:
        seen.append(outcome)
        raise Interrupted

    options = MigrateOptions(goal="f002", acting_app="tenantry", owner="tenantry")
    with pytest.raises(Interrupted):
        run_fleet(
            f.platform.sessions,
            f.platform.box,
            f.spec,
            options,
            concurrency=1,
            on_outcome=stop_after_first,
            actor="cli:test",
        )
    assert len(seen) == 1
    revisions = [f.revision_of(s) for s in _slugs(f)]
    assert "f001" in revisions  # the tenants not yet started stayed where they were
    assert set(revisions) <= {"f001", "f002"}  # and the one in hand finished, whole
    with f.platform.sessions() as session:
        assert session.get(OperationLock, "fleet:tenant") is None
        run = session.scalars(select(FleetRun)).one()
        assert run.status == FleetRunStatus.FAILED
        assert run.finished_at is not None
    report = f.run()  # a new run goes on where this one stopped
    assert report.counts["failed"] == 0
    assert report.counts["migrated"] == revisions.count("f001")
    assert all(f.revision_of(s) == "f002" for s in _slugs(f))


def test_applied_scripts_are_checksummed_and_tampering_is_found(tenants: Fleet) -> None:
    f = tenants
    script = f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    first = f.run()
    assert first.status == FleetRunStatus.SUCCEEDED, first.failures
    checks = verify_fleet(f.platform.sessions, f.platform.box, f.spec)
    assert [c.problems for c in checks if not c.ok] == []

    script.write_text(script.read_text().replace("sa.String(200)", "sa.String(100)"))
    f.new_spec(_metadata(note=True))
    checks = verify_fleet(f.platform.sessions, f.platform.box, f.spec)
    assert all(not c.ok for c in checks)
    assert all(
        any("revision f002 was changed after it was applied" in p for p in c.problems)
        for c in checks
    )
    # f001 was applied before tenantry recorded checksums here (by plain migrate in the
    # fixture it was recorded too): it is not reported as changed.
    engine = make_engine(f.urls[_slugs(f)[0]], pooled=False)
    try:
        with engine.connect() as conn:
            report = checksums.verify(conn, f.spec)
    finally:
        engine.dispose()
    assert report.changed == ["f002"]


def test_a_destructive_revision_is_refused_unless_allowed(tenants: Fleet) -> None:
    f = tenants
    f.write("f002", "f001", F002_DROP, "drop name")
    f.new_spec(_metadata(name=False))

    refused = f.run()
    assert refused.status == FleetRunStatus.FAILED
    assert {o.status for o in refused.outcomes} == {TenantOutcome.REFUSED}
    assert all("refusing a destructive" in (o.error or "") for o in refused.outcomes)
    assert all("products.name" in (o.error or "") for o in refused.outcomes)
    assert all(f.revision_of(s) == "f001" for s in _slugs(f))

    allowed = f.run(allow_destructive=True)
    assert allowed.counts == {"migrated": 4}
    engine = make_engine(f.urls[_slugs(f)[0]], pooled=False)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("products")}
    finally:
        engine.dispose()
    assert columns == {"id"}


def test_a_consumer_app_is_refused(tenants: Fleet) -> None:
    f = tenants
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    report = f.run(acting_app="portal")
    assert {o.status for o in report.outcomes} == {TenantOutcome.REFUSED}
    assert all("portal" in (o.error or "") for o in report.outcomes)
    assert all(f.revision_of(s) == "f001" for s in _slugs(f))


def test_two_runs_cannot_collide_and_a_dead_runs_lock_expires(tenants: Fleet) -> None:
    f = tenants
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    dead_run = uuid.uuid4()
    # A run recorded (and its lock taken) by a process that then died.
    gone = OperationKit(f.platform.sessions, lease_seconds=60, holder="gone:1")
    options = MigrateOptions(goal="f002", acting_app="tenantry", owner="tenantry")
    open_run(gone, f.platform.box, f.spec, options, None, dead_run, concurrency=1)

    with pytest.raises(Conflict) as held:
        f.run()
    assert str(dead_run) in held.value.message
    assert "another fleet run holds the lock" in held.value.message
    assert "gone:1" in held.value.message
    assert all(f.revision_of(s) == "f001" for s in _slugs(f))

    with f.platform.sessions() as session:  # the holder died: its lease runs out
        lock = session.get(OperationLock, "fleet:tenant")
        assert lock is not None
        lock.expires_at = lock.expires_at - timedelta(seconds=120)
        run = session.get_one(Operation, dead_run)
        assert run.lease_expires_at is not None
        run.lease_expires_at = run.lease_expires_at - timedelta(seconds=120)
        session.commit()
    report = f.run()
    assert report.took_over == dead_run
    assert report.counts == {"migrated": 4}
    with f.platform.sessions() as session:
        dead = session.get(FleetRun, dead_run)
        assert dead is not None
        assert dead.status == FleetRunStatus.ABANDONED
        assert session.get(OperationLock, "fleet:tenant") is None  # released at the end


def test_a_tenant_locked_by_another_migration_fails_alone(tenants: Fleet) -> None:
    f = tenants
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    busy = _slugs(f)[0]
    options = MigrateOptions(goal="f002", acting_app="tenantry", owner="tenantry", lock_wait_s=0.2)
    with f.platform.sessions() as session:
        db = tenant_databases(session, f.platform.box, [busy])[0]
    engine = make_engine(f.urls[busy], pooled=False)
    try:
        with engine.connect() as conn:
            # Another migration of this database is under way (a `db migrate`, a queue job).
            if conn.dialect.name == "sqlite":
                with immediate_transaction(conn):
                    outcome = migrate_tenant(db, f.spec, options)
            else:
                with migration_lock(conn, "tenant"):
                    outcome = migrate_tenant(db, f.spec, options)
    finally:
        engine.dispose()
    assert outcome.status == TenantOutcome.FAILED
    assert f.revision_of(busy) == "f001"
    assert f.run().counts == {"migrated": 4}


def test_backup_first_backs_up_and_verifies_each_tenant_before_any_ddl(
    tenants: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tenants
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    p = f.platform
    backups = PreMigrationBackups(
        p.sessions, storage_for(p.settings), p.settings, p.box, actor="cli:test"
    )
    goal = migrations.head(f.spec)

    def run_with_backups() -> RunReport:
        options = MigrateOptions(
            goal=goal,
            acting_app="tenantry",
            owner="tenantry",
            before_ddl=backups.for_tenants(f.spec, goal),
        )
        return run_fleet(p.sessions, p.box, f.spec, options, concurrency=2, actor="cli:test")

    monkeypatch.setenv("TENANTRY_FAILPOINTS", "backup.written=raise")
    failed = run_with_backups()
    assert {o.status for o in failed.outcomes} == {TenantOutcome.FAILED}
    assert all(f.revision_of(slug) == "f001" for slug in _slugs(f))  # no backup, no DDL

    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    report = run_with_backups()
    assert {o.status for o in report.outcomes} == {TenantOutcome.MIGRATED}, report.failures
    with p.sessions() as session:
        taken = session.scalars(select(Backup).where(Backup.status == BackupStatus.VERIFIED)).all()
    assert sorted(b.slug or "" for b in taken) == _slugs(f)
    for backup in taken:
        assert backup.pinned
        assert backup.reason == "pre-migration"
        assert backup.schema_revision == "f001"
        assert backup.label == "before migrating f001 → f002"


def _run_id(f: Fleet) -> uuid.UUID:
    with f.platform.sessions() as session:
        return session.scalars(select(FleetRun.id)).one()


def test_a_cancelled_run_stops_at_a_tenant_boundary_leaving_the_rest_untouched(
    tenants: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tenants
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    # Each tenant takes a second before its commit: the cancel lands while one is in hand.
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "migrate.before_commit=sleep:1")
    kit = OperationKit(f.platform.sessions, lease_seconds=60)

    def cancel_after_first(outcome: Outcome) -> None:
        if outcome.status == TenantOutcome.MIGRATED:
            kit.request_cancel(_run_id(f))

    options = MigrateOptions(goal="f002", acting_app="tenantry", owner="tenantry")
    report = run_fleet(
        f.platform.sessions,
        f.platform.box,
        f.spec,
        options,
        concurrency=1,
        on_outcome=cancel_after_first,
        actor="cli:test",
    )
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    assert report.status == FleetRunStatus.CANCELLED
    by_slug = {o.slug: o.status for o in report.outcomes}
    assert set(by_slug) == set(f.urls)
    untouched = [s for s, status in by_slug.items() if status == TenantOutcome.SKIPPED]
    assert untouched, by_slug  # the cancel was seen before the last tenant
    for slug, status in by_slug.items():  # each tenant whole: migrated, or not started
        assert status in (TenantOutcome.MIGRATED, TenantOutcome.SKIPPED)
        assert f.revision_of(slug) == ("f001" if slug in untouched else "f002")
    with f.platform.sessions() as session:
        run = session.get_one(FleetRun, report.run_id)
        assert (run.status, run.operation_status) == ("cancelled", "cancelled")
        assert (run.skipped, run.progress_current, run.total) == (len(untouched), 4, 4)
        assert run.message is not None
        assert "left untouched" in run.message
        st = fleet_status(session, f.spec)
        counts = fleet_counts(session, f.spec)
        assert session.get(OperationLock, "fleet:tenant") is None
    assert st.failed == []  # skipped is not a failure
    assert (counts.failed, counts.lagging) == (0, len(untouched))
    assert sorted(st.lagging) == sorted(untouched)
    again = f.run()
    assert again.counts == {"migrated": len(untouched), "current": 4 - len(untouched)}


def _lapse(f: Fleet, run_id: uuid.UUID) -> None:
    """The run's process (or its workers) stopped: its lease and lock run out."""
    with f.platform.sessions() as session:
        run = session.get_one(Operation, run_id)
        assert run.lease_expires_at is not None
        run.lease_expires_at = run.lease_expires_at - timedelta(seconds=600)
        lock = session.get(OperationLock, "fleet:tenant")
        if lock is not None:
            lock.expires_at = lock.expires_at - timedelta(seconds=600)
        session.commit()


def test_recovery_resumes_a_queued_run_and_abandons_a_dead_commands_run(tenants: Fleet) -> None:
    f = tenants
    f.write("f002", "f001", F002_NOTE, "product note")
    f.new_spec(_metadata(note=True))
    p = f.platform
    lease = timedelta(seconds=60)
    options = MigrateOptions(goal="f002", acting_app="tenantry", owner="tenantry")
    run_id, store_ids = start_queued_run(
        p.sessions, p.box, f.spec, options, lock_ttl=lease, actor="cli:test"
    )
    first = run_queued_tenant(p.sessions, p.box, f.spec, run_id, store_ids[0], owner="tenantry")
    assert first is not None
    assert first.status == TenantOutcome.MIGRATED
    # A second delivery of the same job does nothing.
    again = run_queued_tenant(p.sessions, p.box, f.spec, run_id, store_ids[0], owner="tenantry")
    assert again is None

    _lapse(f, run_id)  # the workers died: the other three jobs were lost
    kit = OperationKit(p.sessions, lease_seconds=60)
    assert [s.id for s in kit.find_stalled(kinds=(OperationKind.FLEET_RUN,))] == [run_id]
    missing = recover_run(p.sessions, run_id, lease)
    assert sorted(missing) == sorted(store_ids[1:])
    assert recover_run(p.sessions, run_id, lease) == []  # claimed again: not stalled now
    for store_id in missing:
        run_queued_tenant(p.sessions, p.box, f.spec, run_id, store_id, owner="tenantry")
    with p.sessions() as session:
        run = session.get_one(FleetRun, run_id)
        assert (run.status, run.migrated, run.attempts) == ("succeeded", 4, 2)
        assert session.get(OperationLock, "fleet:tenant") is None
    assert all(f.revision_of(s) == "f002" for s in _slugs(f))

    # A run a command ran in its own process cannot be resumed without it: failed, saying so.
    dead_run = uuid.uuid4()
    gone = OperationKit(p.sessions, lease_seconds=60, holder="gone:2")
    open_run(gone, p.box, f.spec, options, None, dead_run, concurrency=1)
    _lapse(f, dead_run)
    assert recover_run(p.sessions, dead_run, lease) == []
    with p.sessions() as session:
        dead = session.get_one(FleetRun, dead_run)
        assert (dead.status, dead.operation_status) == ("abandoned", "failed")
        assert dead.error is not None
        assert "run `tenantry fleet migrate` again" in dead.error
    assert f.run().counts == {"current": 4}  # the lapsed lock is taken over
