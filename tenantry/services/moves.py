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
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin, builder, copy, migrations
from tenantry.db.engines import connect, make_engine, writer
from tenantry.db.identity import read_identity
from tenantry.db.master.models import (
    DatabaseServer,
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
from tenantry.services.connections import server_url, split_url, tenant_url
from tenantry.services.counters import StoreCounters, apply_counters
from tenantry.services.move_plan import (
    MovePlan,
    block_reason,
    move_tables,
    plan_move,
    public_location,
    refuse_busy,
    running_move,
)
from tenantry.settings import Settings

__all__ = [
    "KeptSource",
    "MovePlan",
    "MoveProgress",
    "StoreMover",
    "block_reason",
    "kept_sources",
    "move_document",
    "running_move",
]

#: After blocking writes, wait this long before copying, so write requests that passed the
#: check just before the block commit to the source first (verification would catch any
#: later one as a mismatch).
DRAIN_SECONDS = 2.0
#: Progress (and the write block's lease) is written to master at most this often.
WRITE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class MoveProgress:
    """Where a running move is, for a progress bar."""

    step: str
    progress: int  # 0 to 100
    rows_copied: int
    rows_verified: int
    total_rows: int


ProgressCallback = Callable[[MoveProgress], None]


def move_document(move: StoreMove) -> dict[str, Any]:
    """A move as JSON (its details hold no secret)."""
    return {
        "id": str(move.id),
        "store_id": str(move.store_id),
        "slug": move.slug,
        "from_config_id": str(move.from_config_id),
        "to_config_id": str(move.to_config_id) if move.to_config_id else None,
        "to_server": move.to_server,
        "status": move.status,
        "step": move.step,
        "progress": move.progress,
        "details": move.details,
        "error": move.error,
        "keep_source_until": move.keep_source_until,
        "started_at": move.started_at,
        "finished_at": move.finished_at,
    }


@dataclass
class _Run:
    """A move in progress: what is written to its row as it goes."""

    plan: MovePlan
    details: dict[str, Any]
    step: str = "starting"
    progress: int = 0
    rows_copied: int = 0
    rows_hashed: int = 0  # verification hashes every row twice: in the source and the target
    last_write: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return sum(self.plan.counts.values())


class _LostMove(TenantryError):
    """The move's row or write block was taken over (its lease lapsed): it must stop."""


class VerificationFailed(TenantryError):
    """The copy does not match the source."""


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

    def _start(self, plan: MovePlan) -> _Run:
        run = _Run(
            plan,
            {
                "source": public_location(plan.source_url, plan.source_server),
                "target": public_location(plan.target_url, plan.server),
                "target_created": False,
                "revision": plan.revision,
                "total_rows": sum(plan.counts.values()),
                "tables": {name: {"rows": n} for name, n in plan.counts.items()},
            },
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
                self._mark_abandoned(session, abandoned, plan.move_id)
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
            store.write_block_until = self._lease_end()
        if abandoned is not None:
            self._restore_abandoned_source(abandoned)
            self._drop_abandoned_target(abandoned)
        return run

    def _restore_abandoned_source(self, move: StoreMove) -> None:
        """Make writable again a source a dead mover had made read-only (never switched)."""
        before = (move.details or {}).get("source_before")
        if before is None:
            return
        with self.sessions() as session:
            config = session.get(IntegrationConfig, move.from_config_id)
            if config is None or not config.is_active:
                return
            url = tenant_url(self.box, config)
        # Else left for an operator: the move's details say the source was made read-only.
        with contextlib.suppress(Exception):
            make_writable(url, before)

    def _mark_abandoned(self, session: Session, move: StoreMove, by: uuid.UUID) -> None:
        """Record a move whose mover died (its block lapsed) as rolled back."""
        move.status = StoreMoveStatus.ROLLED_BACK
        move.step = "abandoned"
        move.error = f"abandoned: its mover stopped before finishing; taken over by move {by}"
        move.finished_at = utcnow()
        audit.record(
            session,
            actor=self.actor,
            action="store.move.rolled_back",
            target_type="store",
            target_id=move.slug,
            store_id=move.store_id,
            details={"move_id": str(move.id), "to_server": move.to_server, "error": move.error},
        )

    def _drop_abandoned_target(self, move: StoreMove) -> None:
        """Drop the database a dead mover created (it never became anyone's connection)."""
        target = (move.details or {}).get("target") or {}
        if not (move.details or {}).get("target_created") or not target.get("database"):
            return
        with self.sessions() as session:
            server = session.scalar(
                select(DatabaseServer).where(DatabaseServer.name == move.to_server)
            )
            if server is None:
                return
            url = server_url(self.box, server).set(database=target["database"])
        dropped = False
        with contextlib.suppress(TenantryError):  # else left for an operator: details name it
            dropped = admin.drop_database(url)
        with self.sessions.begin() as session:
            row = session.get_one(StoreMove, move.id)
            row.details = {**row.details, "target_dropped": dropped}

    def _lease_end(self) -> datetime:
        return utcnow() + timedelta(seconds=self.settings.job_lease_seconds)

    # ------------------------------------------------------------------ progress

    def _report(self, run: _Run, step: str | None = None, progress: int | None = None) -> None:
        """Tell the caller; write the row and renew the block on a new step or once a second."""
        changed = step is not None and step != run.step
        run.step = step or run.step
        run.progress = progress if progress is not None else run.progress
        self._tell(run)
        if changed or time.monotonic() - run.last_write >= WRITE_INTERVAL_S:
            self._write(run)

    def _tell(self, run: _Run) -> None:
        if self.on_progress is not None:
            self.on_progress(
                MoveProgress(
                    run.step, run.progress, run.rows_copied, run.rows_hashed // 2, run.total
                )
            )

    def _write(self, run: _Run) -> None:
        plan = run.plan
        with self._master.begin() as conn:
            moved = conn.execute(
                update(StoreMove)
                .where(StoreMove.id == plan.move_id, StoreMove.status == StoreMoveStatus.RUNNING)
                .values(step=run.step, progress=run.progress, details=dict(run.details))
            )
            renewed = conn.execute(
                update(Store)
                .where(Store.id == plan.store_id, Store.write_block_reason == plan.reason)
                .values(write_block_until=self._lease_end())
            )
            if moved.rowcount != 1 or renewed.rowcount != 1:
                raise _LostMove(
                    "the move's write block lapsed and was taken over (the mover stalled for "
                    f"over {self.settings.job_lease_seconds:g} s).",
                    "Run the move again.",
                )
        run.last_write = time.monotonic()

    def _copied(self, run: _Run, rows: int) -> None:
        run.rows_copied += rows
        self._report(run, progress=10 + 60 * run.rows_copied // max(run.total, 1))

    def _hashed(self, run: _Run, rows: int) -> None:
        run.rows_hashed += rows
        done = run.rows_hashed / max(2 * run.total, 1)
        self._report(run, progress=70 + int(25 * done))

    # ------------------------------------------------------------------ copy, verify, switch

    def _copy_verify_switch(self, run: _Run) -> None:
        self._report(run, "draining", 2)
        time.sleep(self.drain_seconds)
        self._create_target(run)
        source = make_engine(run.plan.source_url, pool_size=1)
        target = make_engine(run.plan.target_url, pool_size=1)
        try:
            self._report(run, "create_tables", 8)
            builder.ensure_tables(target, self.spec)
            self._report(run, "copy", 10)
            self._copy(run, source, target)
            failpoint("move.after_copy")
            self._report(run, "verify", 70)
            self._verify(run, source, target)
        finally:
            source.dispose()
            target.dispose()
        failpoint("move.before_switch")
        self._make_source_read_only(run)
        self._switch(run)

    def _make_source_read_only(self, run: _Run) -> None:
        # Before the switch, so a source that cannot be made read-only fails the move (rolled
        # back, the source writable as before) instead of leaving two writable copies. What
        # to restore is recorded first: a rollback, or a later move taking over from a dead
        # mover, puts it back.
        run.details["source_before"] = writable_state(run.plan.source_url)
        self._report(run, "source_read_only", 95)
        run.details["source_read_only"] = make_read_only(run.plan.source_url).document()
        failpoint("move.source_read_only")

    def _create_target(self, run: _Run) -> None:
        # Recorded before creating: a rollback (or a later move, if this process dies) then
        # knows the database is the move's to drop.
        run.details["target_created"] = True
        self._report(run, "create_database", 5)
        failpoint("move.create_database")
        if not admin.create_database(run.plan.target_url):
            run.details["target_created"] = False
            raise Conflict(
                f"database {mask(run.plan.target_url)} appeared on the server as the move "
                "started; it was left as it is.",
                "Run the move again: it picks a free name.",
            )

    def _copy(self, run: _Run, source: Engine, target: Engine) -> None:
        with connect(source) as src, connect(target) as dst:
            data, bookkeeping = move_tables(self.spec, src)
            for table in data:
                failpoint(f"move.copy.{table.name}")
                with dst.begin():
                    copied = copy.copy_table(
                        src,
                        dst,
                        table,
                        batch_rows=self.batch_rows,
                        on_rows=lambda n: self._copied(run, n),
                    )
                    copy.reset_sequences(dst, table)
                src.rollback()  # end the read transaction each table's read began
                run.details["tables"][table.name]["copied"] = copied
            # Last, in one transaction: the revision, the checksums and the identity that make
            # the target recognisably the store's database.
            with dst.begin():
                if run.plan.revision is not None:
                    migrations.stamp(dst, self.spec, run.plan.revision)
                for table in bookkeeping:
                    table.create(dst, checkfirst=True)
                    copied = copy.copy_table(
                        src, dst, table, on_rows=lambda n: self._copied(run, n)
                    )
                    run.details["tables"][table.name]["copied"] = copied
            src.rollback()

    def _verify(self, run: _Run, source: Engine, target: Engine) -> None:
        problems: list[str] = []
        with connect(source) as src, connect(target) as dst:
            data, bookkeeping = move_tables(self.spec, src)
            for table in data + bookkeeping:
                hashed: list[copy.TableDigest] = []
                for conn in (src, dst):
                    hashed.append(
                        copy.table_digest(
                            conn,
                            table,
                            batch_rows=self.batch_rows,
                            on_rows=lambda n: self._hashed(run, n),
                        )
                    )
                    conn.rollback()
                before, after = hashed
                entry = run.details["tables"][table.name]
                entry.update(verified=after.rows, checksum=after.sha256[:16])
                if before.rows != after.rows:
                    problems.append(f"{table.name}: {before.rows} rows in the source, {after.rows}")
                elif before.sha256 != after.sha256:
                    problems.append(f"{table.name}: same {after.rows} rows, different content")
            if read_identity(src) != read_identity(dst):
                problems.append("the identity rows differ")
            revisions = (migrations.current(src, self.spec), migrations.current(dst, self.spec))
            if revisions[0] != revisions[1]:
                problems.append(f"revision {revisions[0]} in the source, {revisions[1]}")
        run.details["verified"] = not problems
        if problems:
            raise VerificationFailed(
                "the copy does not match the source (" + "; ".join(problems[:5]) + ").",
                "The move was rolled back; the store stays where it was. Something wrote to "
                "the source during the move, or the target altered the data: check and retry.",
            )

    def _switch(self, run: _Run) -> None:
        plan = run.plan
        self._report(run, "switch", 95)
        now = utcnow()
        keep_until = now + timedelta(days=self.settings.move_keep_source_days)
        with Session(writer(self._master), expire_on_commit=False) as session, session.begin():
            # One transaction: the store is on the new database (block lifted), or on the old.
            move = session.get(StoreMove, plan.move_id, with_for_update=True)
            store = session.get(Store, plan.store_id, with_for_update=True)
            old = session.get(IntegrationConfig, plan.from_config_id)
            if move is None or move.status != StoreMoveStatus.RUNNING or store is None:
                raise _LostMove("the move was taken over by another, or its store deleted.")
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

    def _finish(self, run: _Run) -> None:
        """Record the completed move as done (nothing is left that can fail it)."""
        run.step, run.progress = "done", 100
        self._tell(run)
        with self._master.begin() as conn:
            conn.execute(
                update(StoreMove)
                .where(StoreMove.id == run.plan.move_id)
                .values(step="done", progress=100, details=dict(run.details))
            )

    # ------------------------------------------------------------------ rollback

    def _roll_back(self, run: _Run, exc: BaseException) -> StoreMove:
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


def kept_sources(session: Session, box: SecretBox, store_id: uuid.UUID) -> list[KeptSource]:
    """The databases the store's completed moves left behind (read-only, kept for a while),
    with the URL to drop each by; those tenantry did not create are never to be dropped."""
    configs = session.scalars(
        select(IntegrationConfig)
        .join(StoreMove, StoreMove.from_config_id == IntegrationConfig.id)
        .where(
            StoreMove.store_id == store_id,
            StoreMove.status == StoreMoveStatus.COMPLETED,
            IntegrationConfig.is_active.is_(False),
        )
        .distinct()
    )
    found = []
    for config in configs:
        url = tenant_url(box, config)
        server = (
            session.get(DatabaseServer, config.database_server_id)
            if config.database_server_id is not None
            else None
        )
        if server is not None:  # dropped with the server's admin login, as the move made it
            url = server_url(box, server).set(database=url.database)
        found.append(KeptSource(url, config.created_by_tenantry))
    return found


@dataclass(frozen=True)
class KeptSource:
    """A database a move left behind, and whether tenantry may drop it (it created it)."""

    url: URL
    droppable: bool
