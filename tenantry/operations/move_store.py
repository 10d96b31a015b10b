"""Moving a store's database to another server: the ``move`` operation.

A move is checked (:mod:`~tenantry.services.move_plan`), recorded already held by this process
(its ``store_moves`` row is a ``move`` operation whose lease this process renews as it reports,
and the store's write block ends with that lease), then the target is created, copied and
verified (:mod:`.move_copy`), the source made read-only, and the store switched over in one
master transaction that also records the operation ``succeeded`` (:func:`switch_store`).

Between the block and the copy, the source's write fence (:mod:`tenantry.db.write_fence`)
waits for the writes in flight there, as long as they take and no longer than
``TENANTRY_MOVE_WRITE_FENCE_SECONDS``: a request that passed the block check just before the
block commits to the source first, and is copied. From the fence on no write lands on the
source unseen: PostgreSQL refuses them (the database read-only, or the shared schema's writes
revoked), SQLite's commits since the fence are looked for before the switch, and on MariaDB
the verification catches them. A writer that outlasts the timeout fails the move (rolled back,
the source writable again).

Any failure before the switch, Ctrl-C, or ``tenantry ops cancel`` (honoured at every progress
report up to the switch) rolls back: the source writable again, the target dropped if the move
created it, the block lifted, the store still served from its source; the operation ends
``failed`` (or ``cancelled``) and the move ``rolled_back``. A cancel that arrives once the
switch began is too late: the move completes. The lease and the write block are renewed
together from a thread while the move runs (:class:`.block_lease.BlockLease`). A mover killed
mid-way leaves a running operation whose lease (and block) lapses; the store's next move, or
the workers' recovery sweep (:meth:`StoreMover.recover_stalled`), rolls it back the same way.
No master transaction is held open while tenant databases are read or written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin, builder, copy, shared_schemas
from tenantry.db.engines import make_engine, writer
from tenantry.db.master.models import (
    HELD_STATUSES,
    IntegrationConfig,
    Operation,
    OperationKind,
    OperationStatus,
    ProgressUnit,
    StoreMove,
    StoreMoveStatus,
    store_moves_table,
)
from tenantry.db.readonly import make_read_only, writable_state
from tenantry.db.schemas import SchemaSpec
from tenantry.db.types import utcnow
from tenantry.db.urls import mask
from tenantry.db.write_fence import WriteFence, fence_writes
from tenantry.errors import Conflict
from tenantry.failpoints import failpoint
from tenantry.observability import metrics
from tenantry.operations.block_lease import BlockLease
from tenantry.operations.kit import OperationKit
from tenantry.operations.move_copy import copy_tables, verify_copy
from tenantry.operations.move_destination import MoveDestination
from tenantry.operations.move_rollback import MoveRollback, undo_move
from tenantry.operations.move_run import MoveCancelled, MoveRun
from tenantry.services import moves, runtime_access
from tenantry.services.move_plan import MovePlan, SharedPlace, plan_move, public_location
from tenantry.services.move_progress import ProgressCallback
from tenantry.services.moves import LostMove, describe
from tenantry.services.permissions import ensure_may_write
from tenantry.services.runtime_access import RuntimeAccess
from tenantry.settings import Settings


@dataclass
class StoreMover:
    """Moves stores' databases; ``on_progress`` is called as the move advances."""

    sessions: sessionmaker[Session]
    box: SecretBox
    settings: Settings
    spec: SchemaSpec
    actor: str
    on_progress: ProgressCallback | None = None
    #: Closes this process's own idle connections to a store's database (the serving
    #: process's router: ``router.evict``), called just before the source is made read-only:
    #: a SQLite file the process itself still holds open cannot leave WAL mode, and the move
    #: would wait the busy timeout for it in vain.
    release_source: Callable[[uuid.UUID], None] | None = None
    batch_rows: int = copy.BATCH_ROWS
    #: The operation this move is part of (a server's drain or a rebalance), if any.
    parent_id: uuid.UUID | None = None
    kit: OperationKit = field(init=False)
    rollback: MoveRollback = field(init=False)

    def __post_init__(self) -> None:
        self.kit = OperationKit.from_settings(self.sessions, self.settings)
        self.rollback = MoveRollback(self.sessions, self.box, self.kit, self.actor)

    @property
    def _master(self) -> Engine:
        engine: Engine = self.sessions.kw["bind"]
        return engine

    # ------------------------------------------------------------------ the move

    def move(
        self,
        store_ref: str | uuid.UUID,
        server_name: str | None,
        *,
        shared_database: str | None = None,
        own_only: bool = False,
    ) -> StoreMove:
        """Move the store's database to ``server_name`` (a registered server, ``sqlite``, or
        ``None``: placement picks); with ``shared_database``, into the store's own schema of
        that shared PostgreSQL database on ``server_name``. Returns the finished move.

        A refusal raises (nothing was changed, no move recorded); a failure or a cancel after
        the start returns the move ``rolled_back`` with its error.
        """
        ensure_may_write("move a store")
        plan = self.plan(store_ref, server_name, shared_database=shared_database, own_only=own_only)
        run = self._start(plan)
        # The lease and the write block stay alive as long as this process runs the move,
        # also through steps that report nothing for a while (creating tables).
        lease = BlockLease(self.kit, plan.move_id, plan.store_id, plan.reason)
        lease.adopt()
        try:
            self._copy_verify_switch(run)
        except BaseException as exc:  # Ctrl-C too: never leave a half-made move behind
            lease.stop()
            moved = self._roll_back(run, exc)
            if not isinstance(exc, Exception):
                raise
            return moved
        lease.stop()
        self._finish(run)
        return self._load(plan.move_id)

    def move_to(self, store_ref: str | uuid.UUID, destination: MoveDestination) -> StoreMove:
        """:meth:`move` to ``destination`` (as the adapters take it); ``own_database`` is
        refused for a store that has a database of its own already."""
        return self.move(
            store_ref,
            destination.server,
            shared_database=destination.shared_database,
            own_only=destination.own_database,
        )

    def plan(
        self,
        store_ref: str | uuid.UUID,
        server_name: str | None,
        *,
        shared_database: str | None = None,
        own_only: bool = False,
    ) -> MovePlan:
        """Check that the move can start (refusing with a reason otherwise); changes nothing."""
        with self.sessions() as session:
            return plan_move(
                session,
                self.box,
                self.spec,
                store_ref,
                server_name,
                shared_database=shared_database,
                own_only=own_only,
                settings=self.settings,
            )

    # ------------------------------------------------------------------ start

    def _start(self, plan: MovePlan) -> MoveRun:
        run = MoveRun(
            plan,
            {
                "source": public_location(plan.source_url, plan.source_server),
                "target": public_location(plan.target_url, plan.server),
                "target_created": False,
                "revision": plan.revision,
                "total_rows": sum(plan.counts.values()),
                "tables": {name: {"rows": n} for name, n in plan.counts.items()},
            },
            master=self._master,
            kit=self.kit,
            on_progress=self.on_progress,
        )
        now = utcnow()
        # Recorded held by this process: the start is the claim, so no other process can
        # take the move between its recording and its first lease.
        move = StoreMove(
            id=plan.move_id,
            store_id=plan.store_id,
            target=plan.slug,
            operation_status=OperationStatus.RUNNING,
            step=run.step,
            progress_current=0,
            progress_total=run.total,
            progress_unit=ProgressUnit.ROWS,
            attempts=1,
            lease_holder=self.kit.holder,
            lease_expires_at=run.lease_end(),
            requested_by=self.actor,
            parent_id=self.parent_id,
            started_at=now,
            from_config_id=plan.from_config_id,
            to_server=plan.server,
            progress=0,
            details=run.details,
        )
        # Read-then-write on the store row: on SQLite take the write lock up front.
        with Session(writer(self._master), expire_on_commit=False) as session, session.begin():
            abandoned = moves.start_move(session, plan, move)
            if abandoned is not None:
                self.rollback.take_over(session, abandoned, by=plan.move_id)
        if abandoned is not None:
            self.rollback.clean_up(abandoned)
        return run

    # ------------------------------------------------------------------ copy, verify, switch

    def _copy_verify_switch(self, run: MoveRun) -> None:
        fence = self._fence(run)
        try:
            runtime = self._copy_verify(run)
            fence.confirm(run.plan.source_url)  # nothing reached the source since the fence
        finally:
            fence.close()
        self._make_source_read_only(run)
        self._switch(run, runtime)

    def _fence(self, run: MoveRun) -> WriteFence:
        """The source's write fence, raised once the block is set (see the module's
        description); what makes the source writable again is recorded before it changes."""
        plan = run.plan
        # Recorded first: a rollback, or a later move taking over from a dead mover, puts it
        # back (the report writes it before the fence changes anything).
        before = writable_state(plan.source_url, plan.source_role)
        run.details["source_before"] = before
        run.report("draining", 2)
        fence = fence_writes(
            plan.source_url,
            self.settings.move_write_fence_seconds,
            plan.source_role,
            before=before,  # completed with what a rollback needs as the fence goes
        )
        if fence.applied_read_only:
            run.details["source_read_only"] = {"applied": True, "how": fence.how}
        run.details["write_fence"] = fence.document()
        try:
            failpoint("move.write_fence")
        except BaseException:
            fence.close()
            raise
        return fence

    def _copy_verify(self, run: MoveRun) -> RuntimeAccess | None:
        """Create the target, copy and verify; the store's runtime access on the target."""
        self._create_target(run)
        source = make_engine(run.plan.source_url, pool_size=1)
        target = make_engine(run.plan.target_url, pool_size=1)
        try:
            run.report("create_tables", 8)
            builder.ensure_tables(target, self.spec)
            run.report("copy", 10)
            copy_tables(
                self.spec,
                source,
                target,
                revision=run.plan.revision,
                tables=run.details["tables"],
                batch_rows=self.batch_rows,
                on_rows=lambda n: run.copied(n),
            )
            failpoint("move.after_copy")
            run.report("verify", 70)
            verify_copy(
                self.spec,
                source,
                target,
                details=run.details,
                batch_rows=self.batch_rows,
                on_rows=lambda n: run.hashed(n),
            )
        finally:
            source.dispose()
            target.dispose()
        run.write()  # the last step boundary where a cancel request is honoured
        failpoint("move.before_switch")
        return self._runtime_access(run)

    def _runtime_access(self, run: MoveRun) -> RuntimeAccess | None:
        """The store's runtime login on the target, with service grants on the copy (the
        login the source does not use, so a source on the same server keeps working)."""
        plan = run.plan
        if plan.shared is not None:  # the schema's tenant role gets DML on the copy
            shared = plan.shared
            shared_schemas.grant_tables(shared.admin, shared.database, shared.schema, shared.role)
            return None
        if not runtime_access.uses_logins(plan.target_url):
            return None
        with Session(self._master) as session:
            current = runtime_access.current_login(
                session.get(IntegrationConfig, plan.from_config_id)
            )
        # Recorded first: a rollback drops it with the target database.
        run.details["target_login"] = runtime_access.next_login(plan.slug, plan.store_id, current)
        return runtime_access.ensure_runtime_access(
            self.box, plan.target_url, plan.slug, plan.store_id, current, rotate=True
        )

    def _make_source_read_only(self, run: MoveRun) -> None:
        # Before the switch, so a source that cannot be made read-only fails the move (rolled
        # back, the source writable as before) instead of leaving two writable copies. What
        # to restore is recorded first: a rollback, or a later move taking over from a dead
        # mover, puts it back.
        plan = run.plan
        run.details.setdefault("source_before", writable_state(plan.source_url, plan.source_role))
        run.report("source_read_only", 95)
        if self.release_source is not None:
            self.release_source(plan.store_id)
        run.details["source_read_only"] = make_read_only(
            plan.source_url, plan.source_role
        ).document()
        failpoint("move.source_read_only")

    def _create_target(self, run: MoveRun) -> None:
        # Recorded before creating: a rollback (or a later move, if this process dies) then
        # knows the database is the move's to drop.
        run.details["target_created"] = True
        run.report("create_database", 5)
        failpoint("move.create_database")
        if run.plan.shared is not None:
            self._create_schema(run, run.plan.shared)
            return
        if not admin.create_database(run.plan.target_url):
            run.details["target_created"] = False
            raise Conflict(
                f"database {mask(run.plan.target_url)} appeared on the server as the move "
                "started; it was left as it is.",
                "Run the move again: it picks a free name.",
            )

    def _create_schema(self, run: MoveRun, place: SharedPlace) -> None:
        """The shared database (created when missing) with its pool login, and the store's
        schema and tenant role in it, as shared provisioning makes them."""
        run.details["target_schema"] = place.document()
        admin.create_database(place.admin.set(database=place.database))
        if shared_schemas.schema_exists(place.admin, place.database, place.schema):
            run.details["target_created"] = False
            raise Conflict(
                f"schema {place.schema} exists already in shared database {place.database}; "
                "it was left as it is.",
                "Drop it if it is a leftover (it is this store's name there), then run the move "
                "again.",
            )
        kept = self.box.open(place.pool_secret) if place.pool_secret else None
        new = shared_schemas.ensure_pool_login(place.admin, place.database, kept)
        run.pool_password = new if new is not None else kept
        shared_schemas.ensure_tenant_schema(place.admin, place.database, place.schema, place.role)

    def _switch(self, run: MoveRun, runtime: RuntimeAccess | None) -> None:
        plan = run.plan
        run.report("switch", 95)
        now = utcnow()
        keep_until = now + timedelta(days=self.settings.move_keep_source_days)
        verified = sum(t.get("verified", 0) for t in run.details["tables"].values())
        with Session(writer(self._master), expire_on_commit=False) as session, session.begin():
            # One transaction: the store is on the new database (block lifted) and the move
            # succeeded, or neither. A cancel requested since the last report is too late.
            held = (
                session.connection()
                .execute(
                    update(Operation)
                    .where(
                        Operation.id == plan.move_id,
                        Operation.lease_holder == self.kit.holder,
                        Operation.status.in_(HELD_STATUSES),
                    )
                    .values(
                        status=OperationStatus.SUCCEEDED,
                        step="switched",
                        progress_current=verified,
                        finished_at=now,
                        lease_expires_at=None,
                        updated_at=now,
                    )
                )
                .rowcount
            )
            if held != 1:
                raise LostMove("the move was taken over by another, or its store deleted.")
            started = session.scalar(
                select(Operation.started_at).where(Operation.id == plan.move_id)
            )
            if started is not None:  # ends here, not through the operation kit
                metrics.operation_ended(
                    OperationKind.MOVE.value,
                    OperationStatus.SUCCEEDED.value,
                    (now - started).total_seconds(),
                )
            new = moves.switch_store(
                session,
                self.box,
                plan,
                run.details,
                keep_until=keep_until,
                actor=self.actor,
                runtime=runtime,
                pool_password=run.pool_password,
            )
            run.step, run.progress = "switched", 97
            moves_table = store_moves_table
            session.execute(
                update(moves_table)
                .where(moves_table.c.id == plan.move_id)
                .values(
                    to_config_id=new.id,
                    progress=run.progress,
                    details=dict(run.details),
                    keep_source_until=keep_until,
                )
            )
        # Committed: a failure from here on (a commit whose answer was lost, a crash) leaves
        # the store on the target; the rollback sees the completed move and keeps it.
        failpoint("move.switched")

    # ------------------------------------------------------------------ after the switch

    def _finish(self, run: MoveRun) -> None:
        """Record the completed move as done (nothing is left that can fail it)."""
        run.step, run.progress = "done", 100
        run.tell()
        moves_table = store_moves_table
        with self._master.begin() as conn:
            conn.execute(
                update(moves_table)
                .where(moves_table.c.id == run.plan.move_id)
                .values(progress=100, details=dict(run.details))
            )
            conn.execute(
                update(Operation).where(Operation.id == run.plan.move_id).values(step="done")
            )

    # ------------------------------------------------------------------ rollback

    def _roll_back(self, run: MoveRun, exc: BaseException) -> StoreMove:
        plan = run.plan
        current = self._load(plan.move_id)
        if current.status == StoreMoveStatus.COMPLETED:
            # The switch committed after all (its commit's answer was lost): the target is
            # the store's database now, and must never be dropped.
            return current
        if current.lease_holder != self.kit.holder:
            return current  # taken over meanwhile: the process that took it ends it
        cancelled = isinstance(exc, MoveCancelled)
        message = describe(exc)
        message += undo_move(plan, run.details)
        self.rollback.end(current, run.details, message, run.step, cancelled=cancelled)
        return self._load(plan.move_id)

    def _load(self, move_id: uuid.UUID) -> StoreMove:
        with self.sessions() as session:
            return moves.load_move(session, move_id)

    # ------------------------------------------------------------------ dead movers

    def recover_stalled(self, move_id: uuid.UUID) -> str | None:
        """Roll back move ``move_id`` whose mover died (see
        :meth:`~tenantry.operations.move_rollback.MoveRollback.recover_stalled`)."""
        return self.rollback.recover_stalled(move_id)
