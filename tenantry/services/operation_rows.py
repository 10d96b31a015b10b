"""The operation record on a caller's session: recording one, asking one to stop, and which
ones no live process holds. Nothing here commits: the caller's transaction decides, so an
operation can be recorded together with the rows it goes with (a backup's catalog row, a
provisioning job). The kit (:mod:`tenantry.operations.kit`) is what holds and ends them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, not_, or_, select, update
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    HELD_STATUSES,
    Operation,
    OperationKind,
    OperationStatus,
    ProgressUnit,
    lifecycle_status,
)
from tenantry.db.types import utcnow
from tenantry.errors import Conflict
from tenantry.services.permissions import ensure_may_write


def lease_lapsed(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """The operation has no lease, or its holder stopped renewing it (it died); ``now``
    may be a bound parameter of a statement built once."""
    return or_(Operation.lease_expires_at.is_(None), Operation.lease_expires_at < now)


def new_operation(
    session: Session,
    kind: OperationKind,
    *,
    id: uuid.UUID | None = None,
    store_id: uuid.UUID | None = None,
    target: str | None = None,
    parent_id: uuid.UUID | None = None,
    requested_by: str = "cli",
    step: str | None = "queued",
    message: str | None = None,
    total: int | None = None,
    unit: ProgressUnit | None = None,
    params: dict[str, Any] | None = None,
) -> Operation:
    """Record a queued operation in the caller's transaction (flushed, not committed).

    ``id`` is the id of the kind-specific record it goes with, if any: both share it.
    A read-only principal is refused before anything is recorded.
    """
    ensure_may_write(f"start a {kind} operation")
    operation = Operation(
        id=id or uuid.uuid4(),
        kind=kind,
        store_id=store_id,
        target=target,
        parent_id=parent_id,
        status=OperationStatus.QUEUED,
        step=step,
        progress_current=0,
        progress_total=total,
        progress_unit=unit,
        message=message,
        attempts=0,
        requested_by=requested_by,
        params=params,
    )
    session.add(operation)
    session.flush()
    return operation


def cancel_in(session: Session, operation: Operation) -> str:
    """Ask ``operation`` to stop, in the caller's transaction; its new status.

    A queued operation is cancelled at once (no process runs it); a running one becomes
    ``cancelling`` and its holder stops at its next step boundary. A finished one is a
    :class:`Conflict`. Each change is conditional on the status read by the database, so a
    claim racing the request either wins (the request then marks it cancelling) or loses.
    """
    now = utcnow()
    op_id = operation.id
    changes: tuple[tuple[OperationStatus, OperationStatus, dict[str, Any]], ...] = (
        (OperationStatus.QUEUED, OperationStatus.CANCELLED, {"finished_at": now}),
        (OperationStatus.RUNNING, OperationStatus.CANCELLING, {}),
    )
    for before, after, extra in changes:
        done = (
            session.connection()
            .execute(
                update(Operation)
                .where(Operation.id == op_id, Operation.status == before)
                .values(status=after, cancel_requested_at=now, updated_at=now, **extra)
            )
            .rowcount
        )
        if done == 1:
            session.refresh(operation)
            return after
    session.refresh(operation)
    status = lifecycle_status(operation)
    if status == OperationStatus.CANCELLING:
        return status  # asked twice: the first request stands
    raise Conflict(
        f"operation {op_id} is {status}; only queued or running operations can be cancelled."
    )


def _stalled(now: datetime, queued_for: timedelta | None) -> ColumnElement[bool]:
    """Held with a lapsed lease, or (with ``queued_for``) queued for longer than that."""
    stalled = and_(Operation.status.in_(HELD_STATUSES), lease_lapsed(now))
    if queued_for is None:
        return stalled
    waiting = and_(
        Operation.status == OperationStatus.QUEUED, Operation.created_at < now - queued_for
    )
    return or_(stalled, waiting)


def live(queued_for: timedelta) -> ColumnElement[bool]:
    """The operation is held or queued and not stalled (see :func:`stalled_query` with
    ``queued_for``): a process runs it, or a worker may still take it."""
    waiting_or_held = Operation.status.in_((*HELD_STATUSES, OperationStatus.QUEUED))
    return and_(waiting_or_held, not_(_stalled(utcnow(), queued_for)))


def stalled_query(
    *,
    kinds: tuple[OperationKind, ...] | None = None,
    queued_for: timedelta | None = None,
) -> Select[uuid.UUID, str, str, str | None]:
    """Operations no live process runs: held (running or cancelling) with a lapsed lease, and,
    with ``queued_for``, queued for longer than that (their queue message may be lost)."""
    query = select(Operation.id, Operation.kind, Operation.status, Operation.lease_holder).where(
        _stalled(utcnow(), queued_for)
    )
    if kinds is not None:
        query = query.where(Operation.kind.in_(kinds))
    return query.order_by(Operation.created_at)
