"""Moving a store's database to another server (seed 004, scenario 3), by a logical copy.

1. **Check**, changing nothing: the store is active, the server registered and active and not
   the one the store is on, no other move of the store is running, and the source database is
   the store's own (identity), at the tenant schema's head and without drift.
2. **Start** (one master transaction): a ``store_moves`` row, and the store's writes blocked
   (the API answers 503 with Retry-After; reads are served from the source). The block is a
   lease renewed as the work progresses: a mover that dies stops renewing it and it lapses.
3. **Copy**: the target database is created on the server (recorded first, so a rollback drops
   only what the move made), its tables built from the models, rows copied table by table
   parent-first in batches, then tenantry's bookkeeping: the head revision stamped, the
   identity row and the scripts' checksums copied. The moved database is the same instance.
4. **Verify**: per table, the row count and a content checksum (:mod:`tenantry.db.copy`) are
   equal on both sides, and so are the identity and the revision.
5. The source is made **read-only** where the backend allows it (writes are still blocked,
   reads keep being served from it), and kept until ``keep_source_until``
   (``TENANTRY_MOVE_KEEP_SOURCE_DAYS``); it is dropped with its store.
6. **Switch** (one master transaction): the old connection deactivated, the new one saved,
   ``connection_version`` bumped (every router reopens), the write block lifted, the store's
   counters recomputed from the moved database.

Any failure of any step (or Ctrl-C) before the switch rolls back: the source made writable
again as it was, the target dropped if the move created it, the block lifted, the store still
served from the source, the move ``rolled_back`` with its error. No master transaction is held
open while tenant databases are read or written.

The checks are :mod:`~tenantry.services.move_plan`, the copy and verification
:mod:`~tenantry.services.move_copy`, the progress and the block's lease
:mod:`~tenantry.services.move_progress`, and what moves leave behind (kept sources, a dead
mover's half-made work) :mod:`~tenantry.services.move_leftovers`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin, builder, copy
from tenantry.db.engines import make_engine, writer
from tenantry.db.master.models import (
    DatabaseStatus,
    IntegrationConfig,
    Store,
    StoreMove,
    StoreMoveStatus,
)
from tenantry.db.readonly import make_read_only, make_writable, writable_state
from tenantry.db.schemas import SchemaSpec
from tenantry.db.types import utcnow
from tenantry.db.urls import mask, redact
from tenantry.errors import Conflict, NotFound, TenantryError
from tenantry.failpoints import failpoint
from tenantry.services import audit
from tenantry.services.connections import split_url
from tenantry.services.counters import StoreCounters, apply_counters
from tenantry.services.move_copy import copy_tables, verify_copy
from tenantry.services.move_leftovers import (
    drop_abandoned_target,
    mark_abandoned,
    restore_abandoned_source,
)
from tenantry.services.move_plan import MovePlan, plan_move, public_location, refuse_busy
from tenantry.services.move_progress import LostMove, MoveRun, ProgressCallback
from tenantry.settings import Settings

#: After blocking writes, wait this long before copying, so write requests that passed the
#: check just before the block commit to the source first (verification would catch any
#: later one as a mismatch).
DRAIN_SECONDS = 2.0


@dataclass
class StoreMover:
    """Moves stores' databases; ``on_progress`` is called as the move advances."""

    sessions: sessionmaker[Session]
    box: SecretBox
    settings: Settings
    spec: SchemaSpec
    actor: str = "cli"
    on_progress: ProgressCallback | None = None
    drain_seconds: float = DRAIN_SECONDS
    batch_rows: int = copy.BATCH_ROWS

    @property
    def _master(self) -> Engine:
        engine: Engine = self.sessions.kw["bind"]
        return engine

    # ------------------------------------------------------------------ the move

    def move(self, store_ref: str | uuid.UUID, server_name: str) -> StoreMove:
        """Move the store's database to ``server_name``; returns the finished move.

        A refusal raises (nothing was changed, no move recorded); a failure after the start
        returns the move ``rolled_back`` with its error.
        """
        plan = self.plan(store_ref, server_name)
        run = self._start(plan)
        try:
            self._copy_verify_switch(run)
        except BaseException as exc:  # Ctrl-C too: never leave a half-made move behind
            moved = self._roll_back(run, exc)
            if not isinstance(exc, Exception):
                raise
            return moved
        self._finish(run)
        return self._load(plan.move_id)

    def plan(self, store_ref: str | uuid.UUID, server_name: str) -> MovePlan:
        """Check that the move can start (refusing with a reason otherwise); changes nothing."""
        with self.sessions() as session:
            return plan_move(session, self.box, self.spec, store_ref, server_name)

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
            lease_seconds=self.settings.job_lease_seconds,
            on_progress=self.on_progress,
        )
        abandoned: StoreMove | None = None
        # Read-then-write on the store row: on SQLite take the write lock up front.
        with Session(writer(self._master), expire_on_commit=False) as session, session.begin():
            store = session.get(Store, plan.store_id, with_for_update=True)
            if store is None:
                raise NotFound(f"store {plan.slug!r} was deleted; nothing was changed.")
            if (
                store.connection_version != plan.connection_version
                or store.database_status != DatabaseStatus.ACTIVE
            ):
                raise Conflict(
                    f"store {plan.slug!r} changed while the move was being prepared; nothing "
                    "was changed.",
                    "Run the move again.",
                )
            abandoned = refuse_busy(session, store)
            if abandoned is not None:
                mark_abandoned(session, abandoned, plan.move_id, actor=self.actor)
            session.add(
                StoreMove(
                    id=plan.move_id,
                    store_id=plan.store_id,
                    slug=plan.slug,
                    from_config_id=plan.from_config_id,
                    to_server=plan.server,
                    status=StoreMoveStatus.RUNNING,
                    step=run.step,
                    progress=0,
                    details=run.details,
                    started_at=utcnow(),
                )
            )
            store.write_block_reason = plan.reason
            store.write_block_until = run.lease_end()
        if abandoned is not None:
            restore_abandoned_source(self.sessions, self.box, abandoned)
            drop_abandoned_target(self.sessions, self.box, abandoned)
        return run

    # ------------------------------------------------------------------ copy, verify, switch

    def _copy_verify_switch(self, run: MoveRun) -> None:
        run.report("draining", 2)
        time.sleep(self.drain_seconds)
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
        failpoint("move.before_switch")
        self._make_source_read_only(run)
        self._switch(run)

    def _make_source_read_only(self, run: MoveRun) -> None:
        # Before the switch, so a source that cannot be made read-only fails the move (rolled
        # back, the source writable as before) instead of leaving two writable copies. What
        # to restore is recorded first: a rollback, or a later move taking over from a dead
        # mover, puts it back.
        run.details["source_before"] = writable_state(run.plan.source_url)
        run.report("source_read_only", 95)
        run.details["source_read_only"] = make_read_only(run.plan.source_url).document()
        failpoint("move.source_read_only")

    def _create_target(self, run: MoveRun) -> None:
        # Recorded before creating: a rollback (or a later move, if this process dies) then
        # knows the database is the move's to drop.
        run.details["target_created"] = True
        run.report("create_database", 5)
        failpoint("move.create_database")
        if not admin.create_database(run.plan.target_url):
            run.details["target_created"] = False
            raise Conflict(
                f"database {mask(run.plan.target_url)} appeared on the server as the move "
                "started; it was left as it is.",
                "Run the move again: it picks a free name.",
            )

    def _switch(self, run: MoveRun) -> None:
        plan = run.plan
        run.report("switch", 95)
        now = utcnow()
        keep_until = now + timedelta(days=self.settings.move_keep_source_days)
        with Session(writer(self._master), expire_on_commit=False) as session, session.begin():
            # One transaction: the store is on the new database (block lifted), or on the old.
            move = session.get(StoreMove, plan.move_id, with_for_update=True)
            store = session.get(Store, plan.store_id, with_for_update=True)
            old = session.get(IntegrationConfig, plan.from_config_id)
            if move is None or move.status != StoreMoveStatus.RUNNING or store is None:
                raise LostMove("the move was taken over by another, or its store deleted.")
            if (
                old is None
                or not old.is_active
                or store.connection_version != plan.connection_version
                or store.database_status != DatabaseStatus.ACTIVE
            ):
                raise Conflict(
                    f"store {plan.slug!r}'s connection or status changed during the move.",
                    "Nothing was switched; run the move again.",
                )
            config_data, secret = split_url(self.box, plan.target_url)
            new = IntegrationConfig(
                store_id=plan.store_id,
                integration_type=config_data["engine"],
                config_data=config_data,
                secret_encrypted=secret,
                database_server_id=plan.server_id,
                created_by_tenantry=True,
                instance_id=old.instance_id,
                is_active=True,
            )
            old.is_active = False
            session.add(new)
            session.flush()
            store.database_type = config_data["engine"]
            store.database_host = config_data.get("host")
            store.database_name = config_data.get("database")
            store.schema_revision = plan.revision
            store.connection_version += 1  # every router drops its engine on the source
            store.write_block_reason = None
            store.write_block_until = None
            verified = {name: t.get("verified", 0) for name, t in run.details["tables"].items()}
            apply_counters(session, store.id, StoreCounters.from_row_counts(verified))
            run.step, run.progress = "switched", 97
            move.to_config_id = new.id
            move.status = StoreMoveStatus.COMPLETED
            move.step, move.progress = run.step, run.progress
            move.details = dict(run.details)
            move.keep_source_until = keep_until
            move.finished_at = now
            audit.record(
                session,
                actor=self.actor,
                action="store.move",
                target_type="store",
                target_id=plan.slug,
                store_id=plan.store_id,
                details={
                    "move_id": str(plan.move_id),
                    "from": run.details["source"],
                    "to": run.details["target"],
                    "rows": run.total,
                    "keep_source_until": keep_until.isoformat(),
                },
            )
        # Committed: a failure from here on (a commit whose answer was lost, a crash) leaves
        # the store on the target; the rollback sees the completed move and keeps it.
        failpoint("move.switched")

    # ------------------------------------------------------------------ after the switch

    def _finish(self, run: MoveRun) -> None:
        """Record the completed move as done (nothing is left that can fail it)."""
        run.step, run.progress = "done", 100
        run.tell()
        with self._master.begin() as conn:
            conn.execute(
                update(StoreMove)
                .where(StoreMove.id == run.plan.move_id)
                .values(step="done", progress=100, details=dict(run.details))
            )

    # ------------------------------------------------------------------ rollback

    def _roll_back(self, run: MoveRun, exc: BaseException) -> StoreMove:
        plan = run.plan
        current = self._load(plan.move_id)
        if current.status == StoreMoveStatus.COMPLETED:
            # The switch committed after all (its commit's answer was lost): the target is
            # the store's database now, and must never be dropped.
            return current
        message = self._describe(plan, exc)
        if "source_before" in run.details:
            try:
                make_writable(plan.source_url, run.details["source_before"])
                run.details["source_read_only"] = {"applied": False, "how": "undone"}
            except Exception as undo_exc:
                run.details["source_writable_error"] = self._describe(plan, undo_exc)
                message += (
                    f" The source {mask(plan.source_url)} could not be made writable again: "
                    f"{run.details['source_writable_error']}"
                )
        dropped, drop_error = False, None
        if run.details.get("target_created"):
            try:
                dropped = admin.drop_database(plan.target_url)
            except Exception as drop_exc:
                drop_error = self._describe(plan, drop_exc)
        run.details.update(target_dropped=dropped)
        if drop_error is not None:
            run.details["target_drop_error"] = drop_error
            message += (
                f" The target database {mask(plan.target_url)} could not be dropped "
                f"({drop_error}); it is left on the server: drop it by hand."
            )
        with self.sessions.begin() as session:
            store = session.get(Store, plan.store_id)
            if store is not None and store.write_block_reason == plan.reason:
                store.write_block_reason = None
                store.write_block_until = None
            move = session.get_one(StoreMove, plan.move_id)
            if move.status == StoreMoveStatus.RUNNING:
                move.status = StoreMoveStatus.ROLLED_BACK
                move.step = "rolled_back"
                move.error = message
                move.details = dict(run.details)
                move.finished_at = utcnow()
                audit.record(
                    session,
                    actor=self.actor,
                    action="store.move.rolled_back",
                    target_type="store",
                    target_id=plan.slug,
                    store_id=plan.store_id,
                    details={
                        "move_id": str(plan.move_id),
                        "to_server": plan.server,
                        "failed_at": run.step,
                        "error": message,
                        "target_dropped": dropped,
                    },
                )
        return self._load(plan.move_id)

    def _describe(self, plan: MovePlan, exc: BaseException) -> str:
        """One line about ``exc``, without the passwords of either database."""
        if isinstance(exc, TenantryError):
            message = exc.message + (f" {exc.hint}" if exc.hint else "")
        elif isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message = f"{type(exc).__name__}: {first}"
        return redact(message)

    def _load(self, move_id: uuid.UUID) -> StoreMove:
        with self.sessions() as session:
            move = session.get_one(StoreMove, move_id)
            session.expunge(move)
            return move
