"""The operation kit: claim, renew, progress, finish, fail, cancel and find-stalled, for every kind.

Every durable operation is a row in master's ``operations`` table (see
:mod:`tenantry.db.master.models.operations`). A process runs one after claiming it: the claim is
a lease (``TENANTRY_JOB_LEASE_SECONDS``) the holder keeps renewing as it reports progress; a
holder that dies stops renewing, and once the lease lapses another process may claim the
operation and resume it. A cancel request is recorded on the row and seen by the holder the next
time it asks (:meth:`OperationKit.cancel_requested`, at a step boundary), so the operation stops
where it can leave nothing half-done.

The kit owns its transactions: each call below is one short transaction of its own on master,
committed at once, so progress and lease renewals are visible to every other process while the
work itself runs, and never depend on (or commit) a caller's session. Recording an operation
together with other rows, in a caller's transaction, is :mod:`tenantry.services.operation_rows`.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Executable,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.engines import writer, writer_sessions
from tenantry.db.master.models import (
    HELD_STATUSES,
    Operation,
    OperationKind,
    OperationStatus,
    ProgressUnit,
)
from tenantry.db.types import UTCDateTime, utcnow
from tenantry.errors import Conflict, NotFound
from tenantry.observability import metrics
from tenantry.operations.locks import ExclusiveLocks, LockGrant
from tenantry.services.operation_rows import cancel_in, lease_lapsed, new_operation, stalled_query
from tenantry.settings import Settings

#: What an operation's own record gets in a progress write: a statement, or a function that
#: writes on the transaction's connection.
Record = Executable | Callable[[Connection], None]
#: Marks a progress field the caller leaves as it is.
_KEEP: Any = object()


#: Master's columns for a claim's holder (an operation's lease, a job's worker) hold this many
#: characters.
HOLDER_MAX = 64


@cache
def this_host() -> str:
    """This machine as claim names name it: its host name and, where the kernel has them, its
    process-id namespace (``host/namespace``). Two containers given the same host name do not
    see each other's processes; their namespaces tell them apart, so neither takes a pid it
    cannot see for a process that died."""
    try:
        return f"{socket.gethostname()}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # no /proc: not Linux
        return socket.gethostname()


def holder_id(prefix: str = "") -> str:
    """A name for this process's claims, unique among processes: ``[prefix]host:pid:random``
    (host as :func:`this_host` says; the prefix says which runner of the process holds it,
    e.g. ``import:``). Too long a name loses its start, so :func:`holder_process` still reads
    host and pid from its end."""
    name = f"{prefix}{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return name[-HOLDER_MAX:]


def holder_process(holder: str) -> tuple[str, int] | None:
    """The host and pid of the process that made claim name ``holder`` (see
    :func:`holder_id`), or None when the name is not one of those."""
    parts = holder.rsplit(":", 3)
    if len(parts) < 3 or not parts[-2].isdigit():
        return None
    return parts[-3], int(parts[-2])


class LostClaim(Exception):
    """The operation is no longer this holder's: it was finished or cancelled meanwhile, or its
    lease lapsed and another process claimed it. The holder must stop working on it."""

    def __init__(self, operation_id: uuid.UUID) -> None:
        super().__init__(f"operation {operation_id} is no longer held by this process")
        self.operation_id = operation_id


@dataclass(frozen=True)
class Progress:
    """Where an operation is, in the one shape every adapter shows."""

    step: str | None
    current: int
    total: int | None
    unit: str | None
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        """The progress as JSON: ``{step, current, total, unit, message}``."""
        return {
            "step": self.step,
            "current": self.current,
            "total": self.total,
            "unit": self.unit,
            "message": self.message,
        }


def progress_of(operation: Operation) -> Progress:
    """The progress of ``operation`` as last recorded."""
    return Progress(
        operation.step,
        operation.progress_current,
        operation.progress_total,
        operation.progress_unit,
        operation.message,
    )


@dataclass(frozen=True)
class Claim:
    """An operation this process now holds."""

    id: uuid.UUID
    kind: str
    #: 1 on the first claim; more when the operation is resumed after its holder died.
    attempts: int
    #: The operation was asked to stop before (or while) its last holder ran it.
    cancel_requested: bool
    #: What the claim's ``load`` read in the claiming transaction (None without one).
    loaded: Any = None


@dataclass(frozen=True)
class Stalled:
    """An operation no live process runs (its holder's lease lapsed, or nobody took it)."""

    id: uuid.UUID
    kind: str
    status: str
    lease_holder: str | None


@dataclass(frozen=True)
class _Held:
    """An operation this holder held, as it was before a write."""

    status: str
    kind: str
    started_at: datetime | None


# Claiming is on every operation's path: the statement is built once, its values bound at
# each claim (building and keying a statement costs more than running it).
_NOW = bindparam("b_now", type_=UTCDateTime())
_TAKE = (
    update(Operation)
    .where(
        Operation.id == bindparam("b_id"),
        or_(
            Operation.status == OperationStatus.QUEUED,
            and_(Operation.status.in_(HELD_STATUSES), lease_lapsed(_NOW)),
        ),
    )
    .values(
        status=case(
            (Operation.status == OperationStatus.QUEUED, OperationStatus.RUNNING),
            else_=Operation.status,
        ),
        lease_holder=bindparam("b_holder"),
        lease_expires_at=bindparam("b_until"),
        attempts=Operation.attempts + 1,
        started_at=func.coalesce(Operation.started_at, _NOW),
        updated_at=_NOW,
    )
)
_TAKEN_COLUMNS = (Operation.kind, Operation.attempts, Operation.status)
_TAKE_RETURNING = _TAKE.returning(*_TAKEN_COLUMNS)
_TAKEN = select(*_TAKEN_COLUMNS).where(Operation.id == bindparam("b_id"))


class OperationKit:
    """The lease/progress/cancel kit on master's ``sessions``, claiming as ``holder``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        lease_seconds: float,
        holder: str | None = None,
    ) -> None:
        # What only reads (an operation as it is now) reads in a read transaction: on SQLite
        # a writer one would queue on master's one lock and hold it while it reads.
        self.reads = sessions
        # Claims and cancels read, then write, while other processes write too: on SQLite
        # their transactions take the write lock up front or fail mid-way.
        self.sessions = writer_sessions(sessions)
        self.engine: Engine = writer(sessions.kw["bind"])
        self.holder = holder or holder_id()
        self.lease = timedelta(seconds=lease_seconds)
        self.locks = ExclusiveLocks(self.engine, self.holder, self.lease)

    @classmethod
    def from_settings(
        cls, sessions: sessionmaker[Session], settings: Settings, holder: str | None = None
    ) -> OperationKit:
        """A kit whose leases last ``settings.job_lease_seconds``."""
        return cls(sessions, lease_seconds=settings.job_lease_seconds, holder=holder)

    # ------------------------------------------------------------------ recording

    def create(self, kind: OperationKind, **fields: Any) -> uuid.UUID:
        """Record a queued operation (see :func:`new_operation` for ``fields``); its id."""
        with self.sessions.begin() as session:
            return new_operation(session, kind, **fields).id

    def get(self, operation_id: uuid.UUID) -> Operation:
        """The operation as it is now (detached)."""
        with self.reads() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                raise NotFound(f"no operation {operation_id}.")
            session.expunge(operation)
            return operation

    # ------------------------------------------------------------------ holding

    def claim(
        self, operation_id: uuid.UUID, load: Callable[[Connection], Any] | None = None
    ) -> Claim | None:
        """Take ``operation_id`` if it is queued, or held by a process whose lease lapsed.

        None when another live process holds it or it is over. Atomic: of several processes
        claiming at once, exactly one gets it. ``load`` reads what the holder needs in the
        claiming transaction (one transaction instead of two); its result is ``loaded``.
        """
        now = utcnow()
        until = now + self.lease
        given = {"b_id": operation_id, "b_now": now, "b_holder": self.holder, "b_until": until}
        with self.engine.begin() as conn:
            if conn.dialect.update_returning:  # what it took, in the same statement
                row = conn.execute(_TAKE_RETURNING, given).one_or_none()
            elif conn.execute(_TAKE, given).rowcount == 1:  # MariaDB: no UPDATE … RETURNING
                row = conn.execute(_TAKEN, given).one()
            else:
                row = None
            if row is None:
                return None
            loaded = load(conn) if load is not None else None
        cancelling = row.status == OperationStatus.CANCELLING
        return Claim(operation_id, row.kind, row.attempts, cancelling, loaded)

    def _held(self, operation_id: uuid.UUID) -> ColumnElement[bool]:
        return and_(
            Operation.id == operation_id,
            Operation.lease_holder == self.holder,
            Operation.status.in_(HELD_STATUSES),
        )

    def renew(self, operation_id: uuid.UUID) -> bool:
        """Extend the lease; False when the operation is no longer this holder's."""
        now = utcnow()
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(Operation)
                .where(self._held(operation_id))
                .values(lease_expires_at=now + self.lease, updated_at=now)
            ).rowcount
        return renewed == 1

    def progress(
        self,
        operation_id: uuid.UUID,
        step: str | None = _KEEP,
        current: int = _KEEP,
        total: int | None = _KEEP,
        unit: ProgressUnit | None = _KEEP,
        message: str | None = _KEEP,
        *,
        record: Record | None = None,
    ) -> bool:
        """Record where the operation is (the fields given; the others stay) and renew the
        lease, committed at once so others see it; ``record`` (a statement on the kind's own
        record, or a function writing on the transaction's connection) is written in the same
        transaction. Returns whether the operation was asked
        to stop: then nothing but the lease is written (the holder stops at this step
        boundary, and cleans up). Raises :class:`LostClaim` when the operation is no longer
        this holder's."""
        given = {
            "step": step,
            "progress_current": current,
            "progress_total": total,
            "progress_unit": unit,
            "message": message,
        }
        values = {k: v for k, v in given.items() if v is not _KEEP}
        held = self._write(operation_id, values, record, unless_cancelling=True)
        return held.status == OperationStatus.CANCELLING

    def _write(
        self,
        operation_id: uuid.UUID,
        values: dict[str, Any],
        record: Record | None = None,
        *,
        unless_cancelling: bool = False,
    ) -> _Held:
        """Update the operation if this holder still holds it; what it was before the update.
        With ``unless_cancelling``, an operation asked to stop only has its lease renewed."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(
                select(Operation.status, Operation.kind, Operation.started_at)
                .where(self._held(operation_id))
                .with_for_update()
            ).first()
            if row is None:
                raise LostClaim(operation_id)
            status = row.status
            if unless_cancelling and status == OperationStatus.CANCELLING:
                values, record = {}, None
            conn.execute(
                update(Operation)
                .where(self._held(operation_id))
                .values({"lease_expires_at": now + self.lease, "updated_at": now, **values})
            )
            if isinstance(record, Executable):
                conn.execute(record)
            elif record is not None:
                record(conn)
        return _Held(str(status), str(row.kind), row.started_at)

    def cancel_requested(self, operation_id: uuid.UUID) -> bool:
        """Whether the operation was asked to stop (check at each step boundary)."""
        with self.engine.connect() as conn:
            status = conn.scalar(select(Operation.status).where(Operation.id == operation_id))
        return status in (OperationStatus.CANCELLING, OperationStatus.CANCELLED)

    def _end(
        self,
        operation_id: uuid.UUID,
        status: OperationStatus,
        values: dict[str, Any],
        record: Record | None = None,
    ) -> None:
        ended = utcnow()
        held = self._write(
            operation_id,
            {"status": status, "finished_at": ended, "lease_expires_at": None, **values},
            record,
        )
        took = (ended - held.started_at).total_seconds() if held.started_at else None
        metrics.operation_ended(held.kind, status.value, took)

    def finish(self, operation_id: uuid.UUID, *, message: str | None = _KEEP) -> None:
        """The operation succeeded: all its work is done, so its progress reads total of total
        (a holder may report its last chunk less often than it works). A cancel request that
        came after its last step boundary is too late: the work is complete. Raises
        :class:`LostClaim` if it is not ours."""
        extra = {} if message is _KEEP else {"message": message}
        done = func.coalesce(Operation.progress_total, Operation.progress_current)
        self._end(
            operation_id,
            OperationStatus.SUCCEEDED,
            {"step": "done", "progress_current": done, **extra},
        )

    def fail(self, operation_id: uuid.UUID, error: str, *, message: str | None = _KEEP) -> None:
        """The operation failed with ``error`` (shown to users: never a secret)."""
        extra = {} if message is _KEEP else {"message": message}
        self._end(operation_id, OperationStatus.FAILED, {"error": error, **extra})

    def mark_cancelled(
        self,
        operation_id: uuid.UUID,
        *,
        message: str = "cancelled",
        record: Executable | None = None,
    ) -> None:
        """The holder stopped as asked, leaving nothing half-done (``record``: a statement on
        the kind's own record, written in the same transaction)."""
        self._end(operation_id, OperationStatus.CANCELLED, {"message": message}, record)

    @contextmanager
    def kept_alive(
        self, operation_id: uuid.UUID, *, lock_keys: tuple[str, ...] = ()
    ) -> Iterator[threading.Event]:
        """Renew the lease of ``operation_id`` (and of the locks ``lock_keys``) from a
        thread for the block, for steps that run longer than a lease without reporting.
        Yields an event that is set once the claim is lost."""
        lost = threading.Event()
        stop = threading.Event()
        every = max(self.lease.total_seconds() / 3, 0.05)

        def renew() -> None:
            while not stop.wait(every):
                if not self.renew(operation_id) or not all(
                    self.locks.renew(key) for key in lock_keys
                ):
                    lost.set()
                    return

        thread = threading.Thread(target=renew, name="tenantry-lease", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()

    # ------------------------------------------------------------------ anyone

    def request_cancel(self, operation_id: uuid.UUID) -> str:
        """Ask the operation to stop (see :func:`cancel_in`); its new status."""
        with self.sessions.begin() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                raise NotFound(f"no operation {operation_id}.")
            return cancel_in(session, operation)

    def find_stalled(
        self,
        *,
        kinds: tuple[OperationKind, ...] | None = None,
        queued_for: timedelta | None = None,
    ) -> list[Stalled]:
        """Operations no live process runs (see :func:`stalled_query`), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(stalled_query(kinds=kinds, queued_for=queued_for)).all()
        return [Stalled(r.id, r.kind, r.status, r.lease_holder) for r in rows]

    # ------------------------------------------------------------------ exclusive locks

    def acquire_lock(
        self, key: str, *, operation_id: uuid.UUID | None = None, wait_s: float = 0.0
    ) -> LockGrant:
        """Hold the exclusive lock ``key`` (see :meth:`ExclusiveLocks.acquire`)."""
        return self.locks.acquire(key, operation_id=operation_id, wait_s=wait_s)

    def renew_lock(self, key: str) -> bool:
        """Extend the lock ``key``; False when it is no longer this holder's."""
        return self.locks.renew(key)

    def release_lock(self, key: str) -> None:
        """Give the lock ``key`` up, if this holder still has it."""
        self.locks.release(key)

    @contextmanager
    def lock_if_free(self, key: str) -> Iterator[bool]:
        """Hold the lock ``key`` for the block if no one else does: yields True (released
        after the block), or False at once when another holder has it (a scheduler tick then
        skips its work: another worker's tick is doing it)."""
        try:
            self.acquire_lock(key)
        except Conflict:
            yield False
            return
        try:
            yield True
        finally:
            self.release_lock(key)
