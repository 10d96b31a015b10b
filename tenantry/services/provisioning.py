"""Provisioning a store's database (seed 001 ``DatabaseProvisioningService``) as a resumable job.

Steps: connect (creating the database in create-new mode) → inspect the existing tables →
create the missing ones → stamp identity and migrate to head → seed initial data → save the
encrypted connection and mark the store active. Each step is idempotent, and progress is
written to the job row in master as it goes, so a worker killed at any point leaves a job
that the next worker completes with the same result.

A provisioning job is an operation (kind ``provision``): a worker claims it with the operation
kit, which keeps its lease and progress; a worker that dies stops renewing the lease, and once
it expires the job is picked up again (see :func:`recoverable_jobs`). A cancelled job's worker
sees the request at its next step, drops the database it created and ends the job cancelled;
when that worker is dead, the recovery sweep claims the job and does the same.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin, builder, checksums, migrations
from tenantry.db.engines import connect, make_engine, writer_sessions
from tenantry.db.identity import stamp_identity
from tenantry.db.master.models import (
    DatabaseServer,
    DatabaseStatus,
    IntegrationConfig,
    OperationKind,
    OperationStatus,
    ProgressUnit,
    ProvisioningJob,
    ProvisioningMode,
    ProvisioningStatus,
    Store,
    provisioning_status,
)
from tenantry.db.master.models.provisioning import OPERATION_STATUSES
from tenantry.db.schemas import SchemaSpec
from tenantry.db.types import utcnow
from tenantry.db.urls import backend_of, mask, parse_url, redact, require_driver
from tenantry.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SchemaMismatch,
    TenantryError,
    WrongDatabase,
)
from tenantry.failpoints import failpoint
from tenantry.operations.kit import LostClaim, OperationKit, cancel_in, lease_lapsed, stalled_query
from tenantry.services import audit, refs
from tenantry.services.connections import join_url, server_url, split_url
from tenantry.services.stores import active_connection, active_job
from tenantry.settings import Settings

ACTIVE = (OperationStatus.QUEUED, OperationStatus.RUNNING)
#: Jobs over (or being cancelled) that may have left a database they created behind.
LEFT_BEHIND = (OperationStatus.CANCELLING, OperationStatus.CANCELLED, OperationStatus.FAILED)
#: A queued job older than this may have lost its queue message: the sweep enqueues it again.
QUEUED_GRACE_S = 5.0
_JOB = cast(Table, ProvisioningJob.__table__)


def tenant_database_name(store: Store) -> str:
    """The database name tenantry gives a store on a server: readable, unique, ≤ 63 chars."""
    return f"t_{store.slug[:50].replace('-', '_')}_{store.id.hex[:8]}"


def tenant_sqlite_path(settings: Settings, store: Store) -> Path:
    """Where tenantry puts a store's SQLite database in the data dir."""
    return (settings.data_dir / "tenants" / f"{store.slug}-{store.id.hex[:8]}.db").resolve()


def request_provisioning(
    session: Session,
    box: SecretBox,
    settings: Settings,
    store: Store,
    *,
    mode: ProvisioningMode,
    server: DatabaseServer | None = None,
    url: str | None = None,
    actor: str = "cli",
    url_field: str = "url",
) -> ProvisioningJob:
    """Create a queued job for ``store`` (the caller enqueues it after committing).

    ``create_new`` makes a database on ``server`` (or a SQLite file in the data dir);
    ``connect_existing`` uses the database at ``url``, never dropping anything in it.
    ``url_field`` names the URL in errors (``url`` in a request body, ``--connect``).
    """
    running = active_job(session, store)
    if running is not None:
        raise Conflict(
            f"store {store.slug!r} already has provisioning job {running.id} ({running.status}).",
            f"Follow it with `tenantry jobs show {running.id}`.",
        )
    if active_connection(session, store) is not None:
        raise Conflict(
            f"store {store.slug!r} is provisioned already.",
            "Delete the store first to start over, or move it to another server.",
        )
    secret: str | None = None
    if mode is ProvisioningMode.CREATE_NEW:
        if url:
            raise InvalidInput("create-new takes a server, not a URL; use connect for a URL.")
        if server is None:
            target: dict[str, Any] = {
                "engine": "sqlite",
                "path": str(tenant_sqlite_path(settings, store)),
            }
        else:
            admin_url = server_url(box, server)
            target, _ = split_url(box, admin_url.set(database=tenant_database_name(store)))
            target["server"] = server.name
    else:
        if not url or server is not None:
            raise InvalidInput("connect-existing takes the URL of the database to connect.")
        parsed = parse_url(url, setting=url_field)
        require_driver(parsed)
        target, secret = split_url(box, parsed)
    store.database_status = DatabaseStatus.PROVISIONING
    job = ProvisioningJob(
        kind=OperationKind.PROVISION,
        store_id=store.id,
        store_fk=store.id,
        target=store.slug,
        requested_by=actor,
        mode=mode,
        operation_status=OperationStatus.QUEUED,
        step="queued",
        progress=0,
        message="waiting for a worker",
        database_server_id=server.id if server else None,
        destination=target,
        secret_encrypted=secret,
        progress_current=0,
        progress_total=0,
        progress_unit=ProgressUnit.TABLES,
        attempts=0,
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="store.provision",
        target_type="provisioning_job",
        target_id=str(job.id),
        store_id=store.id,
        details={"mode": str(mode), "target": _public_target(target)},
    )
    return job


def _public_target(target: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in target.items() if k not in {"password", "query"}}


def cancel_job(session: Session, job: ProvisioningJob, *, actor: str = "cli") -> ProvisioningJob:
    """Cancel a queued or running job; a running one stops at its next step and cleans up
    (until then it shows as cancelled, its operation as cancelling)."""
    if job.operation_status not in ACTIVE:
        raise Conflict(
            f"job {job.id} is {job.public_status}; only queued or running jobs can be cancelled."
        )
    cancel_in(session, job)
    job.message = "cancelled"
    store = session.get(Store, job.store_id)
    if store is not None and store.database_status == DatabaseStatus.PROVISIONING:
        store.database_status = DatabaseStatus.FAILED
    audit.record(
        session,
        actor=actor,
        action="job.cancel",
        target_type="provisioning_job",
        target_id=str(job.id),
        store_id=job.store_id,
    )
    return job


def get_job(session: Session, job_id: str | uuid.UUID) -> ProvisioningJob:
    """The job with id ``job_id``, or whose id starts with it."""
    return refs.find(
        session,
        ProvisioningJob,
        job_id,
        what="provisioning job",
        hint="List jobs with `tenantry jobs list`.",
    )


def list_jobs(
    session: Session,
    *,
    store: Store | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[tuple[ProvisioningJob, str]]:
    """Jobs with their store's slug, newest first."""
    query = select(ProvisioningJob, Store.slug).join(Store, Store.id == ProvisioningJob.store_id)
    if store is not None:
        query = query.where(ProvisioningJob.store_id == store.id)
    if status is not None:
        query = query.where(
            ProvisioningJob.status.in_(OPERATION_STATUSES[ProvisioningStatus(status)])
        )
    rows = session.execute(query.order_by(ProvisioningJob.created_at.desc()).limit(limit))
    return [(job, slug) for job, slug in rows]


#: A cancelled job's message once the database it made is gone.
CANCELLED_AND_DROPPED = "cancelled (the database it created was removed)"


def recoverable_jobs(
    session: Session, *, queued_grace_s: float = QUEUED_GRACE_S
) -> list[uuid.UUID]:
    """Jobs a worker should (re)start: held with an expired lease (their worker died; a
    cancelled one still has its database to drop) and queued ones older than a few seconds
    (their queue message may be lost)."""
    query = stalled_query(
        kinds=(OperationKind.PROVISION,), queued_for=timedelta(seconds=queued_grace_s)
    )
    return [row.id for row in session.execute(query)]


class _LostJob(Exception):
    """The job was cancelled, or another worker took it over after our lease expired."""


@dataclass
class Provisioner:
    """Runs provisioning jobs. One per worker process; ``worker_id`` names it in the leases."""

    sessions: sessionmaker[Session]
    box: SecretBox
    settings: Settings
    spec: SchemaSpec
    worker_id: str

    def __post_init__(self) -> None:
        # A job's master transactions read, then write, while the API and other workers
        # write too: on SQLite they take the write lock up front or fail mid-way.
        self.sessions = writer_sessions(self.sessions)
        self.kit = OperationKit(
            self.sessions, lease_seconds=self.settings.job_lease_seconds, holder=self.worker_id
        )

    # ------------------------------------------------------------------ job bookkeeping

    @property
    def _master(self) -> Engine:
        return self.kit.engine

    #: What of a job's progress is its own record's (the rest is its operation's).
    _OWN = frozenset({"progress", "database_created"})

    def _update(self, job_id: uuid.UUID, **values: Any) -> None:
        """Record progress and renew the lease, if the job is still ours and running; a
        cancel request stops it here (a step boundary)."""
        own = {k: v for k, v in values.items() if k in self._OWN}
        shared = {
            {"tables_created": "current", "total_tables": "total"}.get(k, k): v
            for k, v in values.items()
            if k not in self._OWN
        }
        record = update(_JOB).where(_JOB.c.id == job_id).values(**own) if own else None
        try:
            cancelled = self.kit.progress(job_id, **shared, record=record)
        except LostClaim:
            raise _LostJob(str(job_id)) from None
        if cancelled:
            raise _LostJob(str(job_id))

    def _load(self, job_id: uuid.UUID) -> tuple[ProvisioningJob, Store]:
        with self.sessions() as session:
            job = session.get(ProvisioningJob, job_id)
            if job is None:
                raise NotFound(f"no provisioning job {job_id}.")
            store = session.get(Store, job.store_id)
            if store is None:
                raise NotFound(f"the store of job {job_id} was deleted.")
            session.expunge_all()
            return job, store

    # ------------------------------------------------------------------ running

    def run(self, job_id: uuid.UUID) -> str:
        """Run (or resume) a job to its end; returns its final status, or ``skipped`` when
        another worker holds it or it is already finished."""
        claim = self.kit.claim(job_id)
        if claim is None:
            return "skipped"
        try:
            job, store = self._load(job_id)
        except NotFound as gone:  # its store was deleted meanwhile: end it, or it stalls forever
            with contextlib.suppress(LostClaim):
                if claim.cancel_requested:
                    self.kit.mark_cancelled(job_id)
                else:
                    self.kit.fail(job_id, gone.message)
            return ProvisioningStatus.CANCELLED if claim.cancel_requested else "failed"
        if claim.cancel_requested:  # cancelled while its last worker was dying: clean up
            return self._after_lost(job)
        engine: Engine | None = None
        try:
            url, cloned = self._step_connect(job, store)
            engine = make_engine(url, pool_size=1)
            if cloned:
                identity = self._step_stamp_and_seed_clone(job, store, engine)
            else:
                with connect(engine) as conn:
                    conn.execute(text("SELECT 1"))
                self._step_inspect_and_build(job, engine)
                identity = self._step_migrate(job, engine)
                self._step_seed(job, store, engine)
            self._step_save_and_activate(job, url, identity)
            return ProvisioningStatus.COMPLETED
        except _LostJob:
            return self._after_lost(job)
        except Exception as exc:  # every failure is recorded on the job, never lost
            return self._fail(job, exc)
        finally:
            if engine is not None:
                engine.dispose()

    def _target_url(self, job: ProvisioningJob) -> URL:
        assert job.destination is not None
        if job.mode == ProvisioningMode.CONNECT_EXISTING:
            return join_url(self.box, job.destination, job.secret_encrypted)
        return self._new_database_url(job)

    def _new_database_url(self, job: ProvisioningJob) -> URL:
        assert job.destination is not None
        if job.destination.get("engine") == "sqlite":
            return parse_url(f"sqlite:///{job.destination['path']}", setting="tenant path")
        with self.sessions() as session:
            server = session.get(DatabaseServer, job.database_server_id)
            if server is None:
                raise NotFound("the job's database server was removed.")
            return server_url(self.box, server).set(database=job.destination["database"])

    def _step_connect(self, job: ProvisioningJob, store: Store) -> tuple[URL, bool]:
        """The database's URL, creating it in create-new mode; True when this call made it
        as a copy of the template (so its content is known exactly)."""
        failpoint("provision.connect")
        url = self._target_url(job)
        if (
            job.mode == ProvisioningMode.CREATE_NEW
            and not job.database_created
            and admin.database_exists(url)
            and self._take_over_leftover(job)
        ):
            # Half-made by an earlier job of this store that was cancelled or failed after
            # its worker died: its content is unknown, so start again from nothing.
            admin.drop_database(url)
        if job.mode == ProvisioningMode.CREATE_NEW and not admin.database_exists(url):
            # Recorded before creating, so a crash right after still knows it is ours.
            self._update(
                job.id,
                step="connect",
                progress=5,
                database_created=True,
                message="creating the database",
            )
            job.database_created = True
            failpoint("provision.create_database")
            return url, self._create_database(url)
        self._update(job.id, step="connect", progress=5, message="connecting to the database")
        if job.mode == ProvisioningMode.CREATE_NEW and not job.database_created:
            raise Conflict(
                f"database {mask(url)} exists already and this job did not create it.",
                "To use it, provision with --connect URL instead.",
            )
        return url, False

    def _take_over_leftover(self, job: ProvisioningJob) -> bool:
        """Make this job the owner of the database an earlier, finished job of the same store
        created at the same target and left behind; False when none did (the database is
        someone else's)."""
        with self.sessions() as session:
            earlier = session.scalars(
                select(ProvisioningJob).where(
                    ProvisioningJob.store_id == job.store_id,
                    ProvisioningJob.id != job.id,
                    ProvisioningJob.status.in_(LEFT_BEHIND),
                    ProvisioningJob.database_created.is_(True),
                    lease_lapsed(utcnow()),
                )
            ).all()
            owner = next((e.id for e in earlier if e.destination == job.destination), None)
        if owner is None:
            return False
        with self._master.begin() as conn:
            # Only the job that flips the earlier one's flag takes the database over.
            taken = conn.execute(
                update(_JOB)
                .where(_JOB.c.id == owner, _JOB.c.database_created.is_(True))
                .values(database_created=False)
            )
            if taken.rowcount != 1:
                return False
        self._update(job.id, database_created=True, message="removing a half-made database")
        job.database_created = True
        return True

    def _target_exists(self, job: ProvisioningJob) -> bool:
        try:
            return admin.database_exists(self._new_database_url(job))
        except TenantryError:
            return True  # cannot tell: keep it recorded

    def _create_database(self, url: URL) -> bool:
        """Create the store's database; True when it is a copy of the schema's template."""
        backend = backend_of(url)
        if backend == "sqlite":
            path = Path(url.database or "")
            return builder.copy_sqlite_template(
                self.settings.data_dir / "templates", self.spec, path
            )
        if backend == "postgresql":
            name = url.database or ""
            server = url.set(database="postgres")
            if builder.clone_postgres_template(server, self.spec, name):
                return True
        admin.create_database(url)
        return False

    def _step_stamp_and_seed_clone(self, job: ProvisioningJob, store: Store, engine: Engine) -> str:
        """A template copy made by this run: every table at head, an empty identity table.
        Identity and initial data go in together, in one transaction (a job resumed after a
        crash takes the general path instead)."""
        total = len(self.spec.metadata.sorted_tables)
        self._update(
            job.id,
            step="seed",
            progress=75,
            total_tables=total,
            tables_created=total,
            message="copied the template; stamping identity and writing initial data",
        )
        failpoint("provision.inspect")
        failpoint("provision.migrate")
        failpoint("provision.seed")
        with connect(engine, begin=True) as conn:
            identity = stamp_identity(conn, self.spec, self.settings.tenant_owner)
            self._seed(conn, store)
        return identity.instance_id

    def _seed(self, conn: Connection, store: Store) -> None:
        if self.spec.seed is not None:
            self.spec.seed(conn, {"name": store.name, "slug": store.slug, "id": str(store.id)})

    def _step_inspect_and_build(self, job: ProvisioningJob, engine: Engine) -> None:
        self._update(
            job.id, step="inspect", progress=15, message="connected; listing existing tables"
        )
        failpoint("provision.inspect")
        # A database this job created holds only what tenantry made from the models.
        trusted = job.mode == ProvisioningMode.CREATE_NEW and job.database_created
        with connect(engine) as conn:
            state = builder.inspect_tenant(conn, self.spec, trusted=trusted)
        total = len(self.spec.metadata.sorted_tables)
        if state.identity is not None:
            if state.identity.role != "tenant" or state.identity.schema_name != self.spec.name:
                raise WrongDatabase(
                    f"expected an empty or {self.spec.name} tenant database, found "
                    f"{state.identity.describe()}; nothing was changed."
                )
            self._refuse_other_store(job, state.identity.instance_id)
        if state.conflicts:
            shown = "; ".join(state.conflicts[:6])
            raise SchemaMismatch(
                f"the database holds tables that do not match the {self.spec.name} schema "
                f"({len(state.conflicts)} difference(s): {shown}); nothing was changed.",
                "Connect an empty database, or one whose tables match the schema.",
            )
        if state.identity is not None and state.revision is not None:
            return  # an existing tenant database: migrations bring it up to date
        if trusted and not state.missing and state.revision is not None:
            return  # a clone of the template: complete, only the identity is missing
        self._update(
            job.id,
            step="create_tables",
            progress=20,
            total_tables=total,
            tables_created=len(state.present),
            message=f"{len(state.present)} of {total} tables present",
        )
        present = len(state.present)

        def created(table: str, n: int) -> None:
            done = present + n
            self._update(
                job.id,
                tables_created=done,
                progress=20 + int(50 * done / max(total, 1)),
                message=f"created table {table} ({done}/{total})",
            )

        builder.ensure_tables(engine, self.spec, created)

    def _refuse_other_store(self, job: ProvisioningJob, instance_id: str) -> None:
        with self.sessions() as session:
            other = session.scalar(
                select(Store.slug)
                .join(IntegrationConfig, IntegrationConfig.store_id == Store.id)
                .where(
                    IntegrationConfig.instance_id == instance_id,
                    IntegrationConfig.is_active.is_(True),
                    Store.id != job.store_id,
                )
            )
        if other is not None:
            raise WrongDatabase(
                f"that database is already the database of store {other!r}; nothing was changed.",
                "Each store needs its own database.",
            )

    def _step_migrate(self, job: ProvisioningJob, engine: Engine) -> str:
        self._update(job.id, step="migrate", progress=75, message="stamping identity, migrating")
        failpoint("provision.migrate")
        with connect(engine, begin=True) as conn:
            # The inspect step compared the tables that were there; the rest were made here.
            state = builder.inspect_tenant(conn, self.spec, trusted=True)
            identity = state.identity
            if identity is None:
                if state.missing or state.conflicts:
                    raise SchemaMismatch(
                        "the tables do not match the schema after creating them: "
                        + "; ".join((state.conflicts or state.missing)[:6])
                    )
                identity = stamp_identity(conn, self.spec, self.settings.tenant_owner)
                if state.revision is None:
                    head = migrations.head(self.spec)
                    if head is not None:
                        migrations.stamp(conn, self.spec, head)
            current = migrations.current(conn, self.spec)
            head = migrations.head(self.spec)
            if head is not None and current != head:
                migrations.upgrade(conn, self.spec, head)
            # Built here from these scripts: their hashes are what was applied.
            checksums.record_missing(conn, self.spec)
        self._update(
            job.id,
            progress=80,
            tables_created=len(self.spec.metadata.sorted_tables),
            message=f"at revision {migrations.head(self.spec)}",
        )
        return identity.instance_id

    def _step_seed(self, job: ProvisioningJob, store: Store, engine: Engine) -> None:
        total = len(self.spec.metadata.sorted_tables)
        self._update(
            job.id,
            step="seed",
            progress=85,
            total_tables=total,
            tables_created=total,
            message=f"at revision {migrations.head(self.spec)}; writing initial data",
        )
        failpoint("provision.seed")
        with connect(engine, begin=True) as conn:
            self._seed(conn, store)

    def _step_save_and_activate(self, job: ProvisioningJob, url: URL, instance_id: str) -> None:
        self._update(job.id, step="save_connection", progress=95, message="saving connection")
        failpoint("provision.save_connection")
        config_data, secret = split_url(self.box, url)
        now = utcnow()
        with self.sessions.begin() as session:
            # One transaction: the connection is saved and the store active, or neither.
            locked = session.get(ProvisioningJob, job.id, with_for_update=True)
            if (
                locked is None
                or locked.operation_status != OperationStatus.RUNNING
                or locked.lease_holder != self.worker_id
            ):
                raise _LostJob(str(job.id))
            store = session.get(Store, job.store_id)
            if store is None:
                raise NotFound("the store was deleted while it was being provisioned.")
            config = active_connection(session, store)
            if config is None:
                config = IntegrationConfig(store_id=store.id, is_active=True)
                session.add(config)
            config.integration_type = config_data["engine"]
            config.config_data = config_data
            config.secret_encrypted = secret
            config.database_server_id = job.database_server_id
            config.created_by_tenantry = job.database_created
            config.instance_id = instance_id
            store.database_type = config_data["engine"]
            store.database_host = config_data.get("host")
            store.database_name = config_data.get("database") or config_data.get("path")
            store.database_status = DatabaseStatus.ACTIVE
            store.schema_revision = migrations.head(self.spec)
            store.connection_version += 1
            store.last_activity_at = now
            locked.operation_status = OperationStatus.SUCCEEDED
            locked.step = "done"
            locked.progress = 100
            locked.message = "the store database is ready"
            locked.secret_encrypted = None
            locked.lease_expires_at = None
            locked.finished_at = now
            audit.record(
                session,
                actor=f"worker:{self.worker_id}",
                action="store.provisioned",
                target_type="store",
                target_id=store.slug,
                store_id=store.id,
                details={"database": _public_target(config_data)},
            )

    # ------------------------------------------------------------------ failure

    def _after_lost(self, job: ProvisioningJob) -> str:
        """The job stopped being ours to run: cancelled (drop what it created, then end it
        cancelled), or taken over by another worker. Its status as jobs show it."""
        with self.sessions() as session:
            current = session.get(ProvisioningJob, job.id)
            if current is None:
                return "deleted"
            status, holder = current.operation_status, current.lease_holder
            session.expunge(current)
        if status != OperationStatus.CANCELLING or holder != self.worker_id:
            return provisioning_status(status)
        dropped = self._cleanup(job)
        if not dropped and job.database_created and self._target_exists(job):
            # The drop failed: keep the job cancelling; once the lease lapses, the recovery
            # sweep claims it and tries again.
            return ProvisioningStatus.CANCELLED
        record = update(_JOB).where(_JOB.c.id == job.id).values(database_created=False)
        with contextlib.suppress(LostClaim):
            self.kit.mark_cancelled(
                job.id, message=CANCELLED_AND_DROPPED if dropped else "cancelled", record=record
            )
        return ProvisioningStatus.CANCELLED

    def _cleanup(self, job: ProvisioningJob) -> bool:
        """Drop the database this job created, unless a saved connection points at it."""
        if job.mode != ProvisioningMode.CREATE_NEW or not job.database_created:
            return False
        with self.sessions() as session:
            store = session.get(Store, job.store_id)
            if store is not None and active_connection(session, store) is not None:
                return False
        try:
            return admin.drop_database(self._new_database_url(job))
        except TenantryError:
            return False

    def _fail(self, job: ProvisioningJob, exc: Exception) -> str:
        if isinstance(exc, TenantryError):
            message = exc.message + (f" {exc.hint}" if exc.hint else "")
        else:
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        message = self._scrub(job, message)
        dropped = self._cleanup(job)
        with self.sessions.begin() as session:
            current = session.get(ProvisioningJob, job.id)
            if current is None or current.lease_holder != self.worker_id:
                return "skipped"
            current.operation_status = OperationStatus.FAILED
            current.error = message
            current.message = "failed" + (
                " (the database it created was removed)" if dropped else ""
            )
            current.finished_at = utcnow()
            current.lease_expires_at = None
            current.secret_encrypted = None
            if dropped:
                current.database_created = False
            store = session.get(Store, job.store_id)
            if store is not None and store.database_status == DatabaseStatus.PROVISIONING:
                store.database_status = DatabaseStatus.FAILED
        return ProvisioningStatus.FAILED

    def _scrub(self, job: ProvisioningJob, message: str) -> str:
        # The error is readable by the store's own API key: mask credentials by structure,
        # never by searching for the password (a short one would be spelled out).
        return redact(message)
