"""Fleet migrations: every active tenant database migrated, checked and accounted for.

One run migrates the tenant databases with bounded concurrency: each on its own connection,
under its own migration lock, skipped cheaply when already at the target; one tenant's
failure never stops another. Every outcome is written to master as it happens (so a killed
run leaves an exact account), and a lease in ``fleet_locks`` keeps two runs from colliding
while letting a dead run's lock expire.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import checksums, migrations
from tenantry.db.engines import writer_sessions
from tenantry.db.identity import Identity, expect
from tenantry.db.master.models import (
    DatabaseStatus,
    FleetLock,
    FleetResult,
    FleetRun,
    FleetRunStatus,
    IntegrationConfig,
    Store,
    TenantOutcome,
)
from tenantry.db.probe import probe
from tenantry.db.schemas import SchemaSpec
from tenantry.db.server_connections import ServerConnections
from tenantry.db.types import utcnow
from tenantry.db.urls import mask, redact
from tenantry.errors import (
    Conflict,
    DestructiveChange,
    NotFound,
    NotOwner,
    TenantryError,
    UnidentifiedDatabase,
    WrongDatabase,
)
from tenantry.services import schema_ops
from tenantry.services.connections import join_url

#: Errors that mean "checked and said no, nothing was run" rather than "tried and failed".
REFUSALS = (WrongDatabase, UnidentifiedDatabase, NotOwner, DestructiveChange)
HOLDER = f"{socket.gethostname()}:{os.getpid()}"
#: Outcomes are written to master at least this often (and at the end).
FLUSH_EVERY_S = 0.5


@dataclass(frozen=True)
class TenantDb:
    """A tenant database as master knows it."""

    store_id: uuid.UUID
    slug: str
    url: URL
    instance_id: str | None  # the identity master recorded at provisioning


def tenant_databases(
    session: Session, box: SecretBox, slugs: list[str] | None = None
) -> list[TenantDb]:
    """The active stores' databases (only ``slugs`` when given), ordered by slug."""
    # Plain rows, not entities: over thousands of stores the ORM cost more than the query.
    query = (
        select(
            Store.id,
            Store.slug,
            IntegrationConfig.config_data,
            IntegrationConfig.secret_encrypted,
            IntegrationConfig.instance_id,
        )
        .join(
            IntegrationConfig,
            and_(IntegrationConfig.store_id == Store.id, IntegrationConfig.is_active.is_(True)),
        )
        .where(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
        .order_by(Store.slug)
    )
    if slugs:
        query = query.where(Store.slug.in_(slugs))
    found = [
        TenantDb(
            row.id, row.slug, join_url(box, row.config_data, row.secret_encrypted), row.instance_id
        )
        for row in session.execute(query)
    ]
    if slugs:
        missing = sorted(set(slugs) - {t.slug for t in found})
        if missing:
            raise NotFound(
                f"no active store database for: {', '.join(missing)}.",
                "See the stores with `tenantry stores list`; only active stores are migrated.",
            )
    return found


# --------------------------------------------------------------------------- one tenant


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


#: Shared by every run in this process: one engine per server, not one per tenant.
SERVERS = ServerConnections()


@contextmanager
def tenant_connection(db: TenantDb) -> Iterator[Connection]:
    """One connection to the tenant database, closed (never pooled) afterwards."""
    with SERVERS.connect(db.url) as conn:
        yield conn


def checked_revision(conn: Connection, db: TenantDb, spec: SchemaSpec) -> str | None:
    """The tenant database's revision, after making sure it is the one master recorded for
    the store (role, schema and instance id); the identity guard refuses it otherwise."""
    return checked_identity(conn, db, spec)[1]


def checked_identity(
    conn: Connection, db: TenantDb, spec: SchemaSpec
) -> tuple[Identity, str | None]:
    """The tenant database's identity and revision, checked as :func:`checked_revision`."""
    identity, revision = probe(conn, spec)
    where = f"{mask(db.url)} (store {db.slug}'s database)"
    hint = "The connection points at another database: fix it in master before migrating."
    identity = expect(
        conn, spec, where=where, instance_id=db.instance_id, identity=identity, hint=hint
    )
    return identity, revision


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


# --------------------------------------------------------------------------- the run lock


def acquire_lock(
    session: Session, role: str, run_id: uuid.UUID, ttl: timedelta
) -> uuid.UUID | None:
    """Take the fleet lock of ``role`` for ``run_id``; the run it took over from, if any.

    Raises :class:`Conflict` while another live run holds it. Commits.
    """
    now = utcnow()
    session.add(FleetLock(role=role, run_id=run_id, holder=HOLDER, expires_at=now + ttl))
    try:
        session.commit()
        return None
    except IntegrityError:
        session.rollback()
    held = session.get(FleetLock, role)
    if held is None:  # released in between: try once more
        return acquire_lock(session, role, run_id, ttl)
    if held.expires_at > now:
        raise Conflict(
            f"another fleet run ({held.run_id}, on {held.holder}) is migrating the {role} "
            f"databases; its lock is held until {held.expires_at:%H:%M:%S} UTC.",
            "Wait for it to finish, or follow it with `tenantry fleet status`. A run that "
            "died releases the lock when the lease expires.",
        )
    taken = (
        session.connection()
        .execute(
            update(FleetLock)
            .where(FleetLock.role == role, FleetLock.run_id == held.run_id)
            .values(run_id=run_id, holder=HOLDER, expires_at=now + ttl)
        )
        .rowcount
    )
    if taken != 1:
        session.rollback()
        return acquire_lock(session, role, run_id, ttl)
    session.execute(
        update(FleetRun)
        .where(FleetRun.id == held.run_id, FleetRun.status == FleetRunStatus.RUNNING)
        .values(status=FleetRunStatus.ABANDONED, finished_at=now)
    )
    session.commit()
    return held.run_id


def renew_lock(session: Session, role: str, run_id: uuid.UUID, ttl: timedelta) -> bool:
    """Extend the lease; False when the lock is no longer this run's. Commits."""
    renewed = (
        session.connection()
        .execute(
            update(FleetLock)
            .where(FleetLock.role == role, FleetLock.run_id == run_id)
            .values(expires_at=utcnow() + ttl)
        )
        .rowcount
    )
    session.commit()
    return renewed == 1


def release_lock(session: Session, role: str, run_id: uuid.UUID) -> None:
    """Give the lock up (only if still this run's). Commits."""
    session.execute(delete(FleetLock).where(FleetLock.role == role, FleetLock.run_id == run_id))
    session.commit()


def _writer_session(sessions: sessionmaker[Session]) -> Session:
    # Taking the lock reads, then writes: on SQLite that transaction must hold the write
    # lock from its start, or a concurrent writer makes it fail instead of wait.
    return writer_sessions(sessions)()


# --------------------------------------------------------------------------- the run


@dataclass
class RunReport:
    """The account of one fleet run."""

    run_id: uuid.UUID
    role: str
    goal: str | None
    status: FleetRunStatus
    total: int
    outcomes: list[Outcome] = field(default_factory=list)
    took_over: uuid.UUID | None = None
    seconds: float = 0.0
    lost_lock: bool = False

    @property
    def counts(self) -> Counter[str]:
        """Outcomes per status."""
        return Counter(o.status.value for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        """Tenants that failed or were refused."""
        return [
            o for o in self.outcomes if o.status in (TenantOutcome.FAILED, TenantOutcome.REFUSED)
        ]


class _Recorder:
    """Writes outcomes to master in batches, on a thread of its own when started, so the
    run's thread keeps handing tenants to the pool while master is written."""

    def __init__(self, sessions: sessionmaker[Session], run_id: uuid.UUID) -> None:
        self._sessions = sessions
        self._run_id = run_id
        self._pending: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Flush every :data:`FLUSH_EVERY_S` in the background until :meth:`close`."""
        self._thread = threading.Thread(
            target=self._loop, name="tenantry-fleet-record", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            self.flush()

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self._pending.append(outcome)

    def close(self) -> None:
        """Stop the background thread and write what is left (again: nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def flush(self) -> None:
        """Write the pending outcomes (and the run's counters) in one transaction."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        counts = Counter(o.status for o in batch)
        with self._sessions.begin() as session:
            conn = session.connection()
            # Core executemany: the ORM's unit of work cost more than the run's own work.
            conn.execute(
                insert(FleetResult),
                [
                    {
                        "id": uuid.uuid4(),
                        "run_id": self._run_id,
                        "store_id": o.store_id,
                        "slug": o.slug,
                        "from_revision": o.from_revision,
                        "to_revision": o.to_revision,
                        "status": o.status,
                        "duration_ms": o.duration_ms,
                        "error": o.error,
                        "finished_at": utcnow(),
                    }
                    for o in batch
                ],
            )
            conn.execute(
                update(FleetRun)
                .where(FleetRun.id == self._run_id)
                .values(
                    migrated=FleetRun.migrated + counts[TenantOutcome.MIGRATED],
                    current=FleetRun.current + counts[TenantOutcome.CURRENT],
                    failed=FleetRun.failed
                    + counts[TenantOutcome.FAILED]
                    + counts[TenantOutcome.REFUSED],
                )
            )
            for rev, ids in _by_revision(batch).items():
                conn.execute(update(Store).where(Store.id.in_(ids)).values(schema_revision=rev))


def _by_revision(outcomes: list[Outcome]) -> dict[str | None, list[uuid.UUID]]:
    grouped: dict[str | None, list[uuid.UUID]] = {}
    for o in outcomes:
        if o.status in (TenantOutcome.MIGRATED, TenantOutcome.CURRENT):
            grouped.setdefault(o.to_revision, []).append(o.store_id)
    return grouped


def _open_run(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    options: MigrateOptions,
    slugs: list[str] | None,
    lock_ttl: timedelta,
    *,
    holder: str,
    concurrency: int,
) -> tuple[uuid.UUID, list[TenantDb], uuid.UUID | None]:
    """Take the fleet lock and record a new run: its id, its tenants and the run it took
    over from (if any)."""
    run_id = uuid.uuid4()
    role = spec.role.value
    with sessions() as session:
        tenants = tenant_databases(session, box, slugs)
    with _writer_session(sessions) as session:
        took_over = acquire_lock(session, role, run_id, lock_ttl)
    try:
        with sessions.begin() as session:
            session.add(
                FleetRun(
                    id=run_id,
                    role=role,
                    target=options.goal,
                    holder=holder,
                    concurrency=concurrency,
                    total=len(tenants),
                    options={
                        "stores": slugs or None,
                        "allow_destructive": options.allow_destructive,
                        "backup_first": options.before_ddl is not None,
                        "acting_app": options.acting_app,
                        "queued": holder == "queue",
                        "took_over": str(took_over) if took_over else None,
                    },
                )
            )
    except BaseException:
        with sessions() as session:
            release_lock(session, role, run_id)
        raise
    return run_id, tenants, took_over


def _migrate_all(
    tenants: list[TenantDb],
    spec: SchemaSpec,
    options: MigrateOptions,
    concurrency: int,
    stop: threading.Event,
) -> Generator[Outcome]:
    """Each tenant's outcome as it comes, ``concurrency`` tenants at a time; no tenant is
    started once ``stop`` is set (or once the caller stops iterating).

    Plain threads pulling from one list, not an executor: a future and a wait per tenant
    cost the dispatching thread more than a no-op tenant costs its worker.
    """
    todo = iter(tenants)
    taking = threading.Lock()
    done: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
    abandon = threading.Event()

    def work() -> None:
        try:
            while not (stop.is_set() or abandon.is_set()):
                with taking:
                    db = next(todo, None)
                if db is None:
                    return
                done.put(migrate_tenant(db, spec, options))
        finally:
            done.put(None)  # this worker is finished

    workers = [
        threading.Thread(target=work, name=f"tenantry-fleet-{i}", daemon=True)
        for i in range(max(1, min(concurrency, len(tenants))))
    ]
    for worker in workers:
        worker.start()
    try:
        running = len(workers)
        while running:
            outcome = done.get()
            if outcome is None:
                running -= 1
            else:
                yield outcome
    finally:
        # An interrupted run lets the tenants in hand finish (no DDL is cut off mid-way)
        # before the caller releases the fleet lock.
        abandon.set()
        for worker in workers:
            worker.join()


def run_fleet(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    options: MigrateOptions,
    *,
    concurrency: int = 4,
    slugs: list[str] | None = None,
    lock_ttl: timedelta = timedelta(seconds=60),
    on_outcome: Callable[[Outcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunReport:
    """Migrate every active tenant database (or ``slugs``) to ``options.goal``.

    Holds the fleet lock for the whole run (renewed in the background); writes each outcome
    to master as it comes; ends ``succeeded`` only when no tenant failed or was refused.
    """
    run_id, tenants, took_over = _open_run(
        sessions, box, spec, options, slugs, lock_ttl, holder=HOLDER, concurrency=concurrency
    )
    role = spec.role.value
    report = RunReport(run_id, role, options.goal, FleetRunStatus.RUNNING, len(tenants))
    report.took_over = took_over
    began = time.perf_counter()
    stop = threading.Event()
    lost = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lock_ttl.total_seconds() / 3):
            try:
                with sessions() as s:
                    if not renew_lock(s, role, run_id, lock_ttl):
                        lost.set()
                        return
            except Exception:  # master hiccup: try again at the next beat
                continue

    recorder = _Recorder(sessions, run_id)
    try:
        beat = threading.Thread(target=heartbeat, name="tenantry-fleet-lease", daemon=True)
        beat.start()
        if on_start is not None:
            on_start(len(tenants))
        recorder.start()
        # closing(): if the caller's callback raises, no new tenant is started and those in
        # hand finish before the lock is released below.
        with closing(_migrate_all(tenants, spec, options, concurrency, lost)) as outcomes:
            for outcome in outcomes:
                report.outcomes.append(outcome)
                recorder.add(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
        recorder.close()
        report.lost_lock = lost.is_set()
        report.status = (
            FleetRunStatus.FAILED
            if report.failures or report.lost_lock or len(report.outcomes) < len(tenants)
            else FleetRunStatus.SUCCEEDED
        )
    finally:
        stop.set()
        recorder.close()  # idempotent: what a failed run finished is still recorded
        report.seconds = time.perf_counter() - began
        final = report.status if report.status != FleetRunStatus.RUNNING else FleetRunStatus.FAILED
        with sessions() as session:
            session.execute(
                update(FleetRun)
                .where(FleetRun.id == run_id)
                .values(status=final, finished_at=utcnow())
            )
            session.commit()
            release_lock(session, role, run_id)
        report.status = final
    return report


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


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class FleetStatus:
    """The fleet as master records it."""

    head: str | None
    total: int
    per_revision: dict[str, int]
    lagging: list[str]  # slugs not at head
    failed: list[dict[str, Any]]  # latest outcome failed or refused: slug, error, when
    last_run: dict[str, Any] | None


def fleet_status(session: Session, spec: SchemaSpec) -> FleetStatus:
    """Counts from master only (no tenant database is opened)."""
    head = migrations.head(spec)
    stores = session.execute(
        select(Store.id, Store.slug, Store.schema_revision)
        .where(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
        .order_by(Store.slug)
    ).all()
    per_revision = Counter(s.schema_revision or "unknown" for s in stores)
    latest = (
        select(FleetResult.store_id, func.max(FleetResult.finished_at).label("at"))
        .group_by(FleetResult.store_id)
        .subquery()
    )
    last_outcomes = session.execute(
        select(FleetResult).join(
            latest,
            and_(FleetResult.store_id == latest.c.store_id, FleetResult.finished_at == latest.c.at),
        )
    ).scalars()
    active = {s.id for s in stores}
    failed = [
        {"slug": r.slug, "status": r.status, "error": r.error, "at": r.finished_at}
        for r in last_outcomes
        if r.store_id in active and r.status in (TenantOutcome.FAILED, TenantOutcome.REFUSED)
    ]
    run = session.scalar(select(FleetRun).order_by(FleetRun.started_at.desc()).limit(1))
    last_run = (
        {
            "id": str(run.id),
            "status": run.status,
            "target": run.target,
            "total": run.total,
            "migrated": run.migrated,
            "current": run.current,
            "failed": run.failed,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "holder": run.holder,
        }
        if run is not None
        else None
    )
    return FleetStatus(
        head,
        len(stores),
        dict(per_revision),
        [s.slug for s in stores if s.schema_revision != head],
        sorted(failed, key=lambda f: f["slug"]),
        last_run,
    )


@dataclass(frozen=True)
class TenantCheck:
    """One tenant database as it really is."""

    slug: str
    revision: str | None
    ok: bool
    problems: list[str]


def verify_tenant(db: TenantDb, spec: SchemaSpec) -> TenantCheck:
    """Open the database: identity, real revision, drift from the models, changed scripts."""
    try:
        with tenant_connection(db) as conn:
            current = checked_revision(conn, db, spec)
            head = migrations.head(spec)
            problems = []
            if current != head:
                problems.append(f"at revision {current or 'base'}, the code expects {head}")
            else:
                problems.extend(f"drift: {d}" for d in migrations.drift(conn, spec))
            problems.extend(checksums.verify(conn, spec).problems(spec.role.value))
            return TenantCheck(db.slug, current, not problems, problems)
    except TenantryError as exc:
        return TenantCheck(db.slug, None, False, [exc.message])
    except Exception as exc:
        return TenantCheck(db.slug, None, False, [redact(f"{type(exc).__name__}: {exc}")])


def verify_fleet(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    *,
    concurrency: int = 4,
    on_check: Callable[[TenantCheck], None] | None = None,
) -> list[TenantCheck]:
    """:func:`verify_tenant` over every active tenant; master learns each real revision."""
    with sessions() as session:
        tenants = tenant_databases(session, box)
    by_slug = {t.slug: t for t in tenants}
    checks: list[TenantCheck] = []
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        for check in pool.map(lambda db: verify_tenant(db, spec), tenants):
            checks.append(check)
            if on_check is not None:
                on_check(check)
    seen: dict[str | None, list[uuid.UUID]] = {}
    for check in checks:
        if check.revision is not None:
            seen.setdefault(check.revision, []).append(by_slug[check.slug].store_id)
    with sessions.begin() as session:
        for rev, ids in seen.items():
            session.execute(update(Store).where(Store.id.in_(ids)).values(schema_revision=rev))
    return checks


# --------------------------------------------------------------------------- queued runs


def start_queued_run(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    options: MigrateOptions,
    *,
    slugs: list[str] | None = None,
    lock_ttl: timedelta = timedelta(seconds=60),
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Open a run whose tenants are migrated by queue workers: its id and the store ids to
    enqueue, one job each.

    The run holds the fleet lock like any run; each job renews the lease as it starts and
    the job that completes the count closes the run and releases the lock. If the workers
    stop, the lease expires and a later run takes over (this run's leftover jobs then skip).
    """
    run_id, tenants, _ = _open_run(
        sessions, box, spec, options, slugs, lock_ttl, holder="queue", concurrency=0
    )
    if not tenants:
        _finish_if_done(sessions, run_id, spec.role.value)
    return run_id, [t.store_id for t in tenants]


def run_queued_tenant(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    run_id: uuid.UUID,
    store_id: uuid.UUID,
    *,
    owner: str,
    lock_ttl: timedelta = timedelta(seconds=60),
    pre_migration: Callable[[str | None], Callable[[TenantDb, str | None], None]] | None = None,
) -> Outcome | None:
    """One queued tenant of run ``run_id``; None when the run is over (finished, or
    abandoned after its lease expired) and the job has nothing to do.

    ``pre_migration(goal)`` gives the pre-migration backup hook, used when the run asked
    for backups first."""
    role = spec.role.value
    with sessions() as session:
        if not renew_lock(session, role, run_id, lock_ttl):
            return None  # the run is over or another run took over
        run = session.get(FleetRun, run_id)
        if run is None or run.status != FleetRunStatus.RUNNING:
            return None
        options = MigrateOptions(
            goal=run.target,
            acting_app=str(run.options.get("acting_app") or owner),
            owner=owner,
            allow_destructive=bool(run.options.get("allow_destructive")),
            before_ddl=(
                pre_migration(run.target)
                if pre_migration is not None and run.options.get("backup_first")
                else None
            ),
        )
        slug = session.scalar(select(Store.slug).where(Store.id == store_id)) or str(store_id)
        try:
            tenants = tenant_databases(session, box, [slug])
        except NotFound:
            tenants = []
    if tenants:
        outcome = migrate_tenant(tenants[0], spec, options)
    else:
        outcome = Outcome(
            store_id,
            slug,
            None,
            None,
            TenantOutcome.FAILED,
            0,
            "the store is no longer active; it was not migrated.",
        )
    recorder = _Recorder(sessions, run_id)
    recorder.add(outcome)
    recorder.close()
    _finish_if_done(sessions, run_id, role)
    return outcome


def _finish_if_done(sessions: sessionmaker[Session], run_id: uuid.UUID, role: str) -> bool:
    """Close the run once every tenant has an outcome (exactly one caller wins)."""
    with sessions() as session:
        closed = (
            session.connection()
            .execute(
                update(FleetRun)
                .where(
                    FleetRun.id == run_id,
                    FleetRun.status == FleetRunStatus.RUNNING,
                    FleetRun.migrated + FleetRun.current + FleetRun.failed >= FleetRun.total,
                )
                .values(
                    status=case(
                        (FleetRun.failed > 0, FleetRunStatus.FAILED.value),
                        else_=FleetRunStatus.SUCCEEDED.value,
                    ),
                    finished_at=utcnow(),
                )
            )
            .rowcount
        )
        session.commit()
        if closed == 1:
            release_lock(session, role, run_id)
    return closed == 1


def run_progress(session: Session, run_id: uuid.UUID) -> FleetRun:
    """The run's row (its counters are its progress)."""
    run = session.get(FleetRun, run_id)
    if run is None:
        raise NotFound(f"no fleet run {run_id}.", "See the last run with `tenantry fleet status`.")
    return run
