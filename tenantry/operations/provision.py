"""Provisioning a store's database (seed 001 ``DatabaseProvisioningService``) as a resumable job.

Steps: connect (creating the database in create-new mode) → inspect the existing tables →
create the missing ones → stamp identity and migrate to head → seed initial data → save the
encrypted connection and mark the store active. Each step is idempotent, and progress is
written to the job's record in master as it goes, so a worker killed at any point leaves a job
that the next worker completes with the same result.

The :class:`Provisioner` owns the job's run: it claims the job through the operation kit
(which keeps its lease and progress), opens every transaction (master's, through the kit and
its sessions; the tenant database's around each step of :mod:`tenantry.services.tenant_setup`),
and ends the job: succeeded (with the saved connection, one master transaction), failed, or
cancelled (:mod:`.provision_cleanup`). A cancelled job's worker sees the request at its next
step, drops the database it created and ends the job cancelled; when that worker is dead, the
recovery sweep claims the job and does the same.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Executable, text, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin, builder, logins, migrations
from tenantry.db.ddl_probe import probe_ddl
from tenantry.db.engines import connect, make_engine, writer_sessions
from tenantry.db.master.models import (
    AccessMode,
    ProvisioningJob,
    ProvisioningMode,
    ProvisioningStatus,
    Store,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.db.server_connections import SERVERS
from tenantry.db.sqlite_prepared import write_prepared_copy
from tenantry.db.urls import backend_of, mask
from tenantry.errors import Conflict, NotFound
from tenantry.failpoints import failpoint
from tenantry.operations import provision_claim as claim_step
from tenantry.operations import provision_cleanup as cleanup
from tenantry.operations import provision_shared_run
from tenantry.operations import provision_spare as spare_path
from tenantry.operations.kit import LostClaim, OperationKit, Record
from tenantry.operations.provision_ownership import made_by
from tenantry.services import provisioning, provisioning_records, runtime_access, tenant_setup
from tenantry.services.connections import split_url
from tenantry.services.provisioning_records import recorded_instance
from tenantry.services.spares import ClaimedSpare
from tenantry.settings import Settings

JOB = provisioning_records.JOB_TABLE
#: What of a job's progress is its own record's (the rest is its operation's).
OWN = frozenset({"progress", "database_created"})


@dataclass(frozen=True)
class PreparedCopy:
    """A new SQLite file this job made stamped and seeded: only the connection is left."""

    instance_id: str


class LostJob(Exception):
    """The job was cancelled, or another worker took it over after our lease expired."""


@dataclass
class Provisioner:
    """Runs provisioning jobs. One per worker process; ``worker_id`` names it in the leases."""

    sessions: sessionmaker[Session]
    box: SecretBox
    settings: Settings
    spec: SchemaSpec
    worker_id: str
    #: Master sessions for what only reads (where the job's database is, whose a leftover
    #: is): on SQLite a writer transaction queues on master's one lock, behind the API and
    #: the other workers, and holds it while it reads.
    reads: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.reads = self.sessions
        # A job's master transactions read, then write, while the API and other workers
        # write too: on SQLite they take the write lock up front or fail mid-way.
        self.sessions = writer_sessions(self.sessions)
        self.kit = OperationKit(
            self.reads, lease_seconds=self.settings.job_lease_seconds, holder=self.worker_id
        )

    # ------------------------------------------------------------------ job bookkeeping

    def update(self, job_id: uuid.UUID, *, record: Record | None = None, **values: Any) -> None:
        """Record progress and renew the lease, if the job is still ours and running; a
        cancel request stops it here (a step boundary). ``record`` writes more on the job's
        own record in the same transaction (with ``values``' own fields, when both)."""
        own = {k: v for k, v in values.items() if k in OWN}
        shared = {
            {"tables_created": "current", "total_tables": "total"}.get(k, k): v
            for k, v in values.items()
            if k not in OWN
        }
        if own:
            own_values = update(JOB).where(JOB.c.id == job_id).values(**own)
            more = record

            def record(conn: Connection) -> None:
                conn.execute(own_values)
                if isinstance(more, Executable):
                    conn.execute(more)
                elif more is not None:
                    more(conn)

        try:
            cancelled = self.kit.progress(job_id, **shared, record=record)
        except LostClaim:
            raise LostJob(str(job_id)) from None
        if cancelled:
            raise LostJob(str(job_id))

    def new_database_url(self, job: ProvisioningJob) -> URL:
        """Where the database a create-new ``job`` makes is."""
        with self.reads() as session:
            return provisioning.new_database_url(session, self.box, job)

    # ------------------------------------------------------------------ running

    def run(self, job_id: uuid.UUID) -> str:
        """Run (or resume) a job to its end; returns its final status, or ``skipped`` when
        another worker holds it or it is already finished."""
        before = claim_step.absent_before_claim(self, job_id)
        claim = self.kit.claim(job_id, load=claim_step.loader(self, job_id, before))
        if claim is None:
            return "skipped"
        try:
            if isinstance(claim.loaded, NotFound):
                raise claim.loaded
            job, store, creating = claim.loaded
        except NotFound as gone:  # its store was deleted meanwhile: end it, or it stalls forever
            with contextlib.suppress(LostClaim):
                if claim.cancel_requested:
                    self.kit.mark_cancelled(job_id)
                else:
                    self.kit.fail(job_id, gone.message)
            return ProvisioningStatus.CANCELLED if claim.cancel_requested else "failed"
        if claim.cancel_requested:  # cancelled while its last worker was dying: clean up
            return cleanup.after_lost(self, job)
        if job.mode == ProvisioningMode.CREATE_SHARED:  # a schema of a shared database
            return provision_shared_run.run(self, job, store)
        engine: Engine | None = None
        if creating is not None:
            spare_path.recorded_creating(job, creating.spare)
        try:
            url, cloned = self._step_connect(job, store, creating)
            if isinstance(cloned, ClaimedSpare):
                access = spare_path.place(self, job, cloned, store, url)
                identity = spare_path.stamp_and_seed(self, cloned, store, url)
                self._step_save_and_activate(job, store, url, identity, access)
                return ProvisioningStatus.COMPLETED
            if isinstance(cloned, PreparedCopy):  # a SQLite copy stamped and seeded whole
                self._record_copied(job, None)
                self._step_save_and_activate(job, store, url, cloned.instance_id)
                return ProvisioningStatus.COMPLETED
            made: runtime_access.RuntimeAccess | None = None
            if cloned:
                identity, made = self._step_stamp_and_seed_clone(job, store, url)
            else:
                engine = make_engine(url, pool_size=1)
                with connect(engine) as conn:
                    conn.execute(text("SELECT 1"))
                self.step_inspect_and_build(job, engine)
                identity = self.step_migrate(job, engine)
                self.step_seed(job, store, engine)
            self._step_save_and_activate(job, store, url, identity, made)
            return ProvisioningStatus.COMPLETED
        except LostJob:
            return cleanup.after_lost(self, job)
        except Exception as exc:  # every failure is recorded on the job, never lost
            return cleanup.fail(self, job, exc)
        finally:
            if engine is not None:
                engine.dispose()

    def _step_connect(
        self, job: ProvisioningJob, store: Store, creating: claim_step.Creating | None = None
    ) -> tuple[URL, bool | ClaimedSpare | PreparedCopy]:
        """The database's URL, creating it in create-new mode; True when this call made it
        as a copy of the template (so its content is known exactly), the spare it claimed
        instead (to rename and stamp), or, on SQLite, the copy it made already stamped and
        seeded (:mod:`tenantry.db.sqlite_prepared`). ``creating``: what the claim recorded
        (the job creates the database at that URL)."""
        failpoint("provision.connect")
        if creating is not None:
            url, exists = creating.url, False
        else:
            with self.reads() as session:
                url = provisioning.target_url(session, self.box, job)
            spare_path.discard(self, job, url)  # a resumed job's half-claimed spare
            exists = job.mode == ProvisioningMode.CREATE_NEW and admin.database_exists(url)
        new = job.mode == ProvisioningMode.CREATE_NEW
        if exists and not job.database_created and self._take_over_leftover(job, url):
            # Half-made by an earlier job of this store that was cancelled or failed after
            # its worker died: its content is unknown, so start again from nothing.
            admin.drop_database(url)
            exists = False
        if new and not exists:
            # Recorded before creating, so a crash right after still knows it is ours; a
            # spare claimed in the same transaction is the database, already made.
            spare = (
                creating.spare
                if creating is not None
                else spare_path.record_creating(self, job, url)
            )
            if spare is not None:
                return url, spare
            failpoint("provision.create_database")
            if backend_of(url) == "sqlite":
                return url, self._prepared_sqlite_copy(job, url, store)
            cloned = builder.create_tenant_database(
                url, self.spec, self.settings.data_dir / "templates"
            )
            return url, cloned
        self.update(job.id, step="connect", progress=5, message="connecting to the database")
        if job.mode == ProvisioningMode.CREATE_NEW and (
            not job.database_created
            # Resumed: the database there must be the one it made (provision_ownership).
            or not made_by(job, url, self.spec)
        ):
            raise Conflict(
                f"database {mask(url)} exists already and this job did not create it.",
                "To use it, provision with --connect URL instead.",
            )
        return url, False

    def _prepared_sqlite_copy(self, job: ProvisioningJob, url: URL, store: Store) -> PreparedCopy:
        """The store's SQLite file made as a copy of the template with its identity and
        initial data already in, in one step (a crash leaves no file, or the whole one)."""
        template = builder.sqlite_template(self.settings.data_dir / "templates", self.spec)
        instance_id = write_prepared_copy(
            template,
            Path(url.database or ""),
            lambda conn: tenant_setup.stamp_and_seed_clone(
                conn, self.spec, self.settings.tenant_owner, store, recorded_instance(job)
            ),
        )
        return PreparedCopy(instance_id)

    def _take_over_leftover(self, job: ProvisioningJob, url: URL) -> bool:
        """Make this job the owner of the database an earlier, finished job of the same store
        created at ``url`` and left behind; False when none did (the database is someone
        else's: none did, or the one there is not the one it made)."""
        with self.reads() as session:
            owner = provisioning_records.leftover_owner(session, job)
        if owner is None or not made_by(owner, url, self.spec):
            return False
        with self.sessions.begin() as session:
            # Only the job that flips the earlier one's flag takes the database over.
            if not provisioning_records.release_leftover(session, owner.id):
                return False
        self.update(job.id, database_created=True, message="removing a half-made database")
        job.database_created = True
        return True

    def _step_stamp_and_seed_clone(
        self, job: ProvisioningJob, store: Store, url: URL
    ) -> tuple[str, runtime_access.RuntimeAccess | None]:
        """A template copy made by this run: every table at head, an empty identity table.
        Identity and initial data go in together, in one transaction (a job resumed after a
        crash takes the general path instead); on PostgreSQL the store's runtime login is
        made first and granted in that transaction, on its one session. Its instance id and
        the login's connection (None: no login)."""
        self._record_copied(job, "copied the template; stamping identity and writing initial data")
        access = None
        if backend_of(url) == "postgresql":
            login = runtime_access.store_logins(store.slug, store.id)[0]
            access = runtime_access.make_login(self.box, url, login)
        # On the server's shared engine: its dialect set up once, not once per new database.
        with SERVERS.connect(url) as conn, conn.begin():
            instance_id = tenant_setup.stamp_and_seed_clone(
                conn, self.spec, self.settings.tenant_owner, store, recorded_instance(job)
            )
            if access is not None:
                logins.grant_in(conn, url, access.login, "service", new_login=access.created)
        return instance_id, access

    def step_inspect_and_build(self, job: ProvisioningJob, engine: Engine) -> None:
        """List the tables ``engine``'s database holds (refusing another store's or
        conflicting ones) and create the missing ones, a progress write per table."""
        self.update(
            job.id, step="inspect", progress=15, message="connected; listing existing tables"
        )
        failpoint("provision.inspect")
        # A database this job created holds only what tenantry made from the models.
        trusted = job.mode == ProvisioningMode.CREATE_NEW and job.database_created
        with connect(engine) as conn:
            state = tenant_setup.inspect(conn, self.spec, trusted=trusted)
        total = len(self.spec.metadata.sorted_tables)
        if state.identity is not None:
            with self.reads() as session:
                provisioning_records.refuse_other_store(
                    session, job.store_id, state.identity.instance_id
                )
        tenant_setup.refuse_conflicts(self.spec, state)
        if not tenant_setup.needs_tables(state, trusted=trusted):
            return
        self.update(
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
            self.update(
                job.id,
                tables_created=done,
                progress=20 + int(50 * done / max(total, 1)),
                message=f"created table {table} ({done}/{total})",
            )

        builder.ensure_tables(engine, self.spec, created)

    def step_migrate(self, job: ProvisioningJob, engine: Engine) -> str:
        """Stamp the identity (kept when there is one) and migrate to head; its instance id."""
        self.update(job.id, step="migrate", progress=75, message="stamping identity, migrating")
        failpoint("provision.migrate")
        with connect(engine, begin=True) as conn:
            instance_id = tenant_setup.stamp_and_migrate(
                conn, self.spec, self.settings.tenant_owner, recorded_instance(job)
            )
        self.update(
            job.id,
            progress=80,
            tables_created=len(self.spec.metadata.sorted_tables),
            message=f"at revision {migrations.head(self.spec)}",
        )
        return instance_id

    def step_seed(self, job: ProvisioningJob, store: Store, engine: Engine) -> None:
        """Write the schema's initial data for ``store`` (idempotent)."""
        total = len(self.spec.metadata.sorted_tables)
        self.update(
            job.id,
            step="seed",
            progress=85,
            total_tables=total,
            tables_created=total,
            message=f"at revision {migrations.head(self.spec)}; writing initial data",
        )
        failpoint("provision.seed")
        with connect(engine, begin=True) as conn:
            tenant_setup.seed(conn, self.spec, store)

    def _record_copied(self, job: ProvisioningJob, message: str | None) -> None:
        """Record the seed step of a job whose database is a copy of the template (every
        table there at once), then pass the fail points of the steps the copy stood in for.
        ``message`` None: the step was recorded with the job's creating record already (a
        SQLite file is made stamped and seeded in one go); a cancel is then seen by the
        completion's transaction, which ends the job only if it is still running."""
        if message is not None:
            total = len(self.spec.metadata.sorted_tables)
            self.update(
                job.id,
                step="seed",
                progress=75,
                total_tables=total,
                tables_created=total,
                message=message,
            )
        failpoint("provision.inspect")
        failpoint("provision.migrate")
        failpoint("provision.seed")

    def _step_save_and_activate(
        self,
        job: ProvisioningJob,
        store: Store,
        url: URL,
        instance_id: str,
        made: runtime_access.RuntimeAccess | None = None,
    ) -> None:
        """Save the connection and mark the store active; ``made``: the runtime login a
        claimed spare brought (already granted), else one is made here when the backend
        has logins."""
        # No progress write of its own: the completion below is one transaction that checks
        # the job is still ours and running (a cancel meanwhile is seen there), and the step
        # shown until then is the last one's.
        failpoint("provision.save_connection")
        config_data, secret = split_url(self.box, url)
        # A SQLite file tenantry made has no logins: no access mode to record.
        access: dict[str, Any] = {"access_mode": None, "can_ddl": None}
        if job.mode == ProvisioningMode.CONNECT_EXISTING:
            access = {"access_mode": AccessMode.GIVEN_URL, "can_ddl": probe_ddl(url)}
        elif made is not None:
            config_data, secret = made.config_data, made.secret
            access = {"access_mode": AccessMode.RUNTIME_LOGIN, "can_ddl": False}
        elif runtime_access.uses_logins(url):
            # The tables exist: the store's runtime login gets service grants on them (and,
            # on PostgreSQL, on those later migrations create), and no DDL.
            made = runtime_access.ensure_runtime_access(self.box, url, store.slug, store.id, None)
            assert made is not None  # no current login: one is always made
            config_data, secret = made.config_data, made.secret
            access = {"access_mode": AccessMode.RUNTIME_LOGIN, "can_ddl": False}
        # One transaction: the connection is saved and the store active, or neither.
        with self.sessions.begin() as session:
            completed = provisioning_records.complete(
                session,
                job,
                worker_id=self.worker_id,
                config_data=config_data,
                secret=secret,
                instance_id=instance_id,
                revision=migrations.head(self.spec),
                **access,
            )
        if not completed:
            raise LostJob(str(job.id))
