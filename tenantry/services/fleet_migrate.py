"""One tenant database of a fleet: migrated (never raising: a failure is an outcome), its SQL
planned without changing anything, or verified as it really is.

These take a tenant database and work on its own connection; master is not touched here (the
fleet run in :mod:`tenantry.operations.fleet_run` records what they return).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Connection

from tenantry.db import checksums, migrations
from tenantry.db.master.models import TenantOutcome
from tenantry.db.schemas import SchemaSpec
from tenantry.db.urls import mask, redact
from tenantry.errors import (
    DestructiveChange,
    NotOwner,
    TenantryError,
    UnidentifiedDatabase,
    WrongDatabase,
)
from tenantry.services import schema_ops
from tenantry.services.fleet_targets import (
    SharedSessions,
    TenantDb,
    checked_identity,
    checked_revision,
    checked_snapshot,
    tenant_connection,
)

#: Errors that mean "checked and said no, nothing was run" rather than "tried and failed".
REFUSALS = (WrongDatabase, UnidentifiedDatabase, NotOwner, DestructiveChange)


@dataclass(frozen=True)
class Outcome:
    """What happened to one tenant database."""

    store_id: uuid.UUID
    slug: str
    from_revision: str | None
    to_revision: str | None
    status: TenantOutcome
    duration_ms: int
    error: str | None = None


#: Why a tenant has the outcome ``skipped``.
NOT_STARTED = "not started: the run was cancelled"


def skipped(store_id: uuid.UUID, slug: str) -> Outcome:
    """The outcome of a tenant a cancelled run did not start (its database untouched)."""
    return Outcome(store_id, slug, None, None, TenantOutcome.SKIPPED, 0, NOT_STARTED)


@dataclass(frozen=True)
class MigrateOptions:
    """How every tenant of a run is migrated."""

    goal: str | None
    acting_app: str
    owner: str
    allow_destructive: bool = False
    lock_wait_s: float = 5.0
    #: Runs before any DDL on a tenant that has revisions to apply (a pre-migration
    #: backup); raising fails that tenant, with nothing migrated.
    before_ddl: Callable[[TenantDb, str | None], None] | None = None


def migrate_tenant(db: TenantDb, spec: SchemaSpec, options: MigrateOptions) -> Outcome:
    """Bring one tenant database to ``options.goal``; never raises (failures are outcomes)."""
    started = time.perf_counter()
    start: str | None = None

    def done(status: TenantOutcome, to: str | None, error: str | None = None) -> Outcome:
        ms = int((time.perf_counter() - started) * 1000)
        return Outcome(db.store_id, db.slug, start, to, status, ms, error)

    try:
        with tenant_connection(db) as conn:
            identity, start = checked_identity(conn, db, spec)
            if start == options.goal:
                return done(TenantOutcome.CURRENT, start)
            if db.no_ddl is not None:
                return done(
                    TenantOutcome.REFUSED,
                    start,
                    f"store {db.slug}: {db.no_ddl}. Register that server (`tenantry servers "
                    "add`), or connect the store with a login that may change the schema.",
                )
            if options.before_ddl is not None:
                options.before_ddl(db, start)
            result = schema_ops.migrate_locked(
                conn,
                spec,
                mask(db.url),
                target=options.goal or "base",
                acting_app=options.acting_app,
                owner=options.owner,
                allow_destructive=options.allow_destructive,
                lock_wait_s=options.lock_wait_s,
                # Known to be this store's database, with a version table: not read twice.
                checked=identity if start is not None else None,
            )
            start = result.from_revision
            status = TenantOutcome.MIGRATED if result.applied else TenantOutcome.CURRENT
            return done(status, result.to_revision)
    except TenantryError as exc:
        refused = isinstance(exc, REFUSALS)
        return done(TenantOutcome.REFUSED if refused else TenantOutcome.FAILED, start, exc.message)
    except Exception as exc:  # a driver or DDL error: this tenant failed, the run goes on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return done(TenantOutcome.FAILED, start, redact(f"{type(exc).__name__}: {first}")[:2000])


# --------------------------------------------------------------------------- --sql


@dataclass(frozen=True)
class SqlPlan:
    """The SQL one group of tenants (same dialect, same revision) would run."""

    dialect: str
    from_revision: str | None
    slugs: list[str]
    sql: str


def plan_sql(
    tenants: list[TenantDb], spec: SchemaSpec, goal: str | None, *, concurrency: int = 4
) -> tuple[list[SqlPlan], list[Outcome]]:
    """Read each tenant's revision (changing nothing) and render the upgrade SQL per dialect
    and starting revision; tenants that could not be read come back as failed outcomes."""

    def probe(db: TenantDb) -> tuple[TenantDb, str | None, str | None]:
        try:
            with tenant_connection(db) as conn:
                return db, checked_revision(conn, db, spec), None
        except TenantryError as exc:
            return db, None, exc.message
        except Exception as exc:
            return db, None, redact(f"{type(exc).__name__}: {exc}")

    groups: dict[tuple[str, str | None], list[TenantDb]] = {}
    problems: list[Outcome] = []
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        for db, current, error in pool.map(probe, tenants):
            if error is not None:
                problems.append(
                    Outcome(db.store_id, db.slug, None, None, TenantOutcome.FAILED, 0, error)
                )
            elif current != goal:
                groups.setdefault((db.url.get_backend_name(), current), []).append(db)
    plans = []
    for (dialect, start), dbs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        migrations.between(spec, start, goal)  # refuses downgrades and unknown revisions
        sql = migrations.upgrade_sql(spec, dbs[0].url, start, goal or "base")
        plans.append(SqlPlan(dialect, start, [d.slug for d in dbs], sql))
    return plans, problems


# --------------------------------------------------------------------------- --verify


@dataclass(frozen=True)
class TenantCheck:
    """One tenant database as it really is."""

    slug: str
    revision: str | None
    ok: bool
    problems: list[str]


@dataclass(frozen=True)
class Baseline:
    """What every tenant of a verify run is compared with, read once per run: the head
    revision and each revision's script hash as the files are now."""

    head: str | None
    scripts: dict[str, str]

    @classmethod
    def of(cls, spec: SchemaSpec) -> Baseline:
        """The baseline of ``spec``'s code now."""
        return cls(migrations.head(spec), checksums.scripts_now(spec))


def verify_tenant(
    db: TenantDb,
    spec: SchemaSpec,
    baseline: Baseline | None = None,
    shared: SharedSessions | None = None,
) -> TenantCheck:
    """Open the database: identity, real revision, drift from the models, changed scripts
    (against ``baseline``, read here when the caller has none). A store in a schema of a
    shared database is read on one of ``shared``'s sessions when given, and on a session of
    its own when that one read does not settle it (a first full comparison, a missing
    table)."""
    expected = baseline or Baseline.of(spec)
    try:
        if shared is not None and db.schema is not None:
            with shared.connect(db) as conn:
                check = _check(conn, db, spec, expected, one_read=True)
            if check is not None:
                return check
        with tenant_connection(db) as conn:
            check = _check(conn, db, spec, expected, one_read=False)
        assert check is not None  # read the careful way, every tenant is settled
        return check
    except TenantryError as exc:
        return TenantCheck(db.slug, None, False, [exc.message])
    except Exception as exc:
        return TenantCheck(db.slug, None, False, [redact(f"{type(exc).__name__}: {exc}")])


def _check(
    conn: Connection, db: TenantDb, spec: SchemaSpec, expected: Baseline, *, one_read: bool
) -> TenantCheck | None:
    """The tenant on ``conn`` checked; with ``one_read``, None when one snapshot read does
    not settle it (a backend without that read, a missing table, a schema not compared in
    full yet in this process)."""
    # PostgreSQL: everything read in one statement; elsewhere one read at a time.
    snapshot = checked_snapshot(conn, db, spec)
    if snapshot is None and one_read:
        return None
    current = snapshot.revision if snapshot else checked_revision(conn, db, spec)
    problems = []
    if current != expected.head:
        problems.append(f"at revision {current or 'base'}, the code expects {expected.head}")
    else:
        fp = snapshot.fingerprint if snapshot else None
        if one_read and not (fp and migrations.known_clean(spec, fp)):
            return None
        problems.extend(f"drift: {d}" for d in migrations.drift(conn, spec, fp))
    stored = snapshot.checksums if snapshot else checksums.recorded(conn, spec)
    report = checksums.compare(spec, current, stored, now=expected.scripts)
    problems.extend(report.problems(spec.role.value))
    return TenantCheck(db.slug, current, not problems, problems)
