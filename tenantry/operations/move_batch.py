"""Moving several stores, one ``move`` operation each, under one parent operation (a server's
drain, a rebalance): :class:`MoveBatch`.

Each store is moved by :class:`~tenantry.operations.move_store.StoreMover` exactly as ``stores
move`` does (its own operation, a child of the parent; verified; its writes blocked only while
it moves; a shared-schema store into a shared database of the same name on its target), up to
``concurrency`` at a time. The parent's progress counts the stores done; a cancel of the
parent starts no further move (those running finish). A refused or rolled-back
move is one store's outcome, never the batch's end.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    IntegrationConfig,
    Operation,
    OperationStatus,
    ProgressUnit,
    StoreMove,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.operations.lease_takeover import holder_gone
from tenantry.operations.move_store import StoreMover
from tenantry.runtime import Platform
from tenantry.services.move_progress import MoveProgress
from tenantry.services.moves import describe
from tenantry.services.rebalance_plan import PlannedMove
from tenantry.settings import Settings

#: A store's outcome: moved now, moved by an earlier run of the same parent, or not moved.
MOVED, MOVED_EARLIER, FAILED = "moved", "moved earlier", "failed"
#: At most this many stores move at once (each holds two database connections).
MAX_CONCURRENCY = 16


def check_concurrency(value: int) -> int:
    """``--concurrency``: 1 to :data:`MAX_CONCURRENCY` stores moving at once."""
    if not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidInput(
            f"concurrency {value} is out of range.",
            f"Give 1 to {MAX_CONCURRENCY} stores to move at once.",
        )
    return value


def recorded_concurrency(operation: Operation) -> int:
    """The concurrency a drain or rebalance was asked with (its params; 1 if none was
    recorded, as by a version that did not record it): what a process resuming it uses."""
    value = (operation.params or {}).get("concurrency")
    if isinstance(value, int) and 1 <= value <= MAX_CONCURRENCY:
        return value
    return 1


@dataclass(frozen=True)
class StoreOutcome:
    """How one store's move ended."""

    slug: str
    source: str
    target: str
    status: str
    move_id: uuid.UUID | None = None
    error: str | None = None
    seconds: float | None = None

    def document(self) -> dict[str, Any]:
        """The outcome as JSON."""
        return {
            "store": self.slug,
            "from": self.source,
            "to": self.target,
            "status": self.status,
            "move_id": str(self.move_id) if self.move_id else None,
            "error": self.error,
            "seconds": round(self.seconds, 2) if self.seconds is not None else None,
        }


#: Told as the batch advances: (store slug, its move's progress), or (slug, outcome) once done.
OnMoveProgress = Callable[[str, MoveProgress], None]
OnStoreDone = Callable[[StoreOutcome], None]


@dataclass
class MoveBatch:
    """Runs planned moves as children of operation ``parent_id`` (held by ``kit``)."""

    sessions: sessionmaker[Session]
    box: SecretBox
    settings: Settings
    spec: SchemaSpec
    actor: str
    kit: OperationKit
    parent_id: uuid.UUID
    on_progress: OnMoveProgress | None = None
    on_done: OnStoreDone | None = None
    stopped: bool = field(default=False, init=False)
    _done: int = field(default=0, init=False)
    _total: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def earlier(self) -> list[StoreOutcome]:
        """The stores an earlier run of the parent already moved (completed child moves)."""
        with self.sessions() as session:
            done = session.scalars(
                select(StoreMove)
                .where(
                    StoreMove.parent_id == self.parent_id,
                    StoreMove.operation_status == OperationStatus.SUCCEEDED,
                )
                .order_by(StoreMove.finished_at)
            )
            return [
                StoreOutcome(
                    m.slug or "?",
                    ((m.details or {}).get("source") or {}).get("server") or "?",
                    m.to_server,
                    MOVED_EARLIER,
                    m.id,
                )
                for m in done
            ]

    def recover_orphans(self, *, wait_s: float) -> list[uuid.UUID]:
        """Roll back the moves an earlier run of the parent left running when its process
        died, waiting up to ``wait_s`` for their leases to lapse; the ids rolled back."""
        with self.sessions() as session:
            orphans = list(
                session.scalars(
                    select(StoreMove.id).where(
                        StoreMove.parent_id == self.parent_id,
                        StoreMove.operation_status.in_(ACTIVE_STATUSES),
                    )
                )
            )
        mover = self._mover()
        recovered = []
        for move_id in orphans:
            deadline = time.monotonic() + wait_s
            while mover.recover_stalled(move_id) is None and time.monotonic() < deadline:
                self.kit.renew(self.parent_id)
                time.sleep(0.25)
            recovered.append(move_id)
        return recovered

    def run(
        self, planned: list[PlannedMove], concurrency: int, *, done: int, total: int
    ) -> list[StoreOutcome]:
        """Move every store of ``planned``, ``concurrency`` at a time; their outcomes in plan
        order. ``done`` of ``total`` is where the parent's progress stands before."""
        self._done = done
        self._total = total
        self._report(None)
        if concurrency <= 1:  # in this thread: Ctrl-C rolls the running move back
            return [self._move(move) for move in planned]
        with ThreadPoolExecutor(concurrency, thread_name_prefix="tenantry-move") as pool:
            futures = [pool.submit(self._move, move) for move in planned]
            try:
                return [future.result() for future in futures]
            except BaseException:  # Ctrl-C: the moves running finish, no other starts
                self.stopped = True
                raise

    def _mover(self, slug: str | None = None) -> StoreMover:
        def told(state: MoveProgress) -> None:
            if self.on_progress is not None and slug is not None:
                self.on_progress(slug, state)

        return StoreMover(
            self.sessions,
            self.box,
            self.settings,
            self.spec,
            actor=self.actor,
            on_progress=told,
            parent_id=self.parent_id,
        )

    def _move(self, planned: PlannedMove) -> StoreOutcome:
        if self.stopped:
            outcome = StoreOutcome(
                planned.slug, planned.source, planned.target, FAILED, error="not started: stopped"
            )
            self._finished(outcome)
            return outcome
        started = time.monotonic()
        try:
            moved = self._mover(planned.slug).move(
                planned.store_id,
                planned.target,
                shared_database=self._shared_database(planned.store_id),
            )
        except Exception as exc:  # refused before it started: this store's outcome only
            outcome = StoreOutcome(
                planned.slug,
                planned.source,
                planned.target,
                FAILED,
                error=describe(exc),
                seconds=time.monotonic() - started,
            )
        else:
            ok = moved.operation_status == OperationStatus.SUCCEEDED
            outcome = StoreOutcome(
                planned.slug,
                planned.source,
                planned.target,
                MOVED if ok else FAILED,
                moved.id,
                None if ok else moved.error,
                time.monotonic() - started,
            )
        self._finished(outcome)
        return outcome

    def _shared_database(self, store_id: uuid.UUID) -> str | None:
        """A shared-schema store keeps its mode when its server is drained: it moves into a
        shared database of the same name on the target (``None``: its own database)."""
        with self.sessions() as session:
            config = session.scalar(
                select(IntegrationConfig).where(
                    IntegrationConfig.store_id == store_id, IntegrationConfig.is_active.is_(True)
                )
            )
            if config is None or not config.db_schema:
                return None
            return str(config.config_data.get("database"))

    def _finished(self, outcome: StoreOutcome) -> None:
        with self._lock:
            if outcome.status == MOVED:
                self._done += 1
            self._report(outcome)
        if self.on_done is not None:
            self.on_done(outcome)

    def _report(self, outcome: StoreOutcome | None) -> None:
        message = f"{self._done} of {self._total} stores moved"
        if outcome is not None:
            message += f"; last: {outcome.slug} {outcome.status}"
        try:
            cancel = self.kit.progress(
                self.parent_id,
                step="moving",
                current=self._done,
                total=self._total,
                unit=ProgressUnit.DATABASES,
                message=message,
            )
        except LostClaim:
            cancel = True
        if cancel:
            self.stopped = True


@dataclass
class MoveRunner:
    """What runs a batch of moves on ``platform`` as ``actor`` (a drain, a rebalance): who
    is told of progress."""

    platform: Platform
    actor: str
    on_progress: OnMoveProgress | None = None
    on_done: OnStoreDone | None = None

    def claim(self, kit: OperationKit, operation_id: uuid.UUID, *, again: str) -> Operation:
        """Claim the batch operation; one held by a process of this host that died is waited
        for until its lease lapses. A live holder elsewhere, or an operation that is over, is
        a :class:`Conflict` (``again``: the command that starts a new one)."""
        deadline = time.monotonic() + kit.lease.total_seconds() + 2
        while kit.claim(operation_id) is None:
            operation = kit.get(operation_id)
            if operation.status not in ACTIVE_STATUSES:
                raise Conflict(
                    f"{operation.kind} {operation_id} is over ({operation.status}).",
                    f"Run `{again}` for a new one.",
                )
            if _alive(operation.lease_holder) or time.monotonic() > deadline:
                until = operation.lease_expires_at or utcnow()
                raise Conflict(
                    f"{operation.kind} {operation_id} ({operation.target}) is being run by "
                    f"{operation.lease_holder} (lease until {until:%H:%M:%S} UTC).",
                    "Follow it with `tenantry ops show ID`; if that process died, run "
                    f"`{again}` again once its lease lapsed.",
                )
            time.sleep(0.25)
        return kit.get(operation_id)

    def batch(self, kit: OperationKit, operation_id: uuid.UUID) -> MoveBatch:
        """The moves of operation ``operation_id`` (held by ``kit``), run as its children."""
        return MoveBatch(
            self.platform.sessions,
            self.platform.box,
            self.platform.settings,
            self.platform.tenant_spec,
            self.actor,
            kit,
            operation_id,
            on_progress=self.on_progress,
            on_done=self.on_done,
        )


def _alive(holder: str | None) -> bool:
    """Whether the process holding a claim may be alive (any process of another host may)."""
    return not holder_gone(holder or "")
