"""Reading operation records, and asking one to stop, on a caller's session (never committed).

What ``tenantry ops`` and ``/operations`` show: a page of operations filtered by kind, status and
store; one operation by its id or the start of it; its document in the one shape every adapter
prints, progress included as ``{step, current, total, unit, message}``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    FINISHED_STATUSES,
    HELD_STATUSES,
    Operation,
    OperationKind,
    OperationStatus,
    ProvisioningJob,
    lifecycle_status,
)
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput
from tenantry.operations.kit import progress_of
from tenantry.services import audit, provisioning, refs
from tenantry.services.operation_rows import cancel_in

LIST_HINT = "List operations with `tenantry ops list` (or GET /operations)."
#: What a stalled operation means and what happens to it.
STALLED_NOTE = (
    "the process running it stopped renewing its lease (it died or hangs); a worker's "
    "recovery sweep (`tenantry worker`) resumes it or ends it, saying what to do next."
)


def get_operation(
    session: Session, ref: str | uuid.UUID, *, store_id: uuid.UUID | None = None
) -> Operation:
    """The operation whose id is ``ref`` or starts with it; with ``store_id``, only among that
    store's operations (another store's is not found, as if it did not exist)."""
    return refs.find(
        session,
        Operation,
        ref,
        what="operation",
        hint=LIST_HINT,
        where=None if store_id is None else Operation.store_id == store_id,
    )


def list_operations(
    session: Session,
    *,
    kind: OperationKind | None = None,
    status: OperationStatus | None = None,
    store_id: uuid.UUID | None = None,
    parent_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Operation], int]:
    """A page of operations, newest first, and how many match in all."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1 to 1000 and offset at least 0.")
    conditions = []
    if kind is not None:
        conditions.append(Operation.kind == kind)
    if status is not None:
        conditions.append(Operation.status == status)
    if store_id is not None:
        conditions.append(Operation.store_id == store_id)
    if parent_id is not None:
        conditions.append(Operation.parent_id == parent_id)
    query = select(Operation).where(*conditions)
    page = session.scalars(
        query.order_by(Operation.created_at.desc(), Operation.id).limit(limit).offset(offset)
    )
    total = session.scalar(select(func.count()).select_from(Operation).where(*conditions))
    return list(page), int(total or 0)


def is_stalled(operation: Operation) -> bool:
    """Whether a process holds ``operation`` but stopped renewing its lease (it died): the
    recovery sweep of a worker resumes it or ends it."""
    return (
        lifecycle_status(operation) in HELD_STATUSES
        and operation.lease_expires_at is not None
        and operation.lease_expires_at < utcnow()
    )


def operation_document(operation: Operation) -> dict[str, Any]:
    """An operation as JSON, in the shape ``ops show --json`` and the API share."""
    return {
        "id": str(operation.id),
        "kind": operation.kind,
        "target": operation.target,
        "store_id": str(operation.store_id) if operation.store_id else None,
        "status": lifecycle_status(operation),
        "stalled": is_stalled(operation),
        "progress": progress_of(operation).as_dict(),
        "error": operation.error,
        "attempts": operation.attempts,
        "lease_holder": operation.lease_holder,
        "lease_expires_at": operation.lease_expires_at,
        "cancel_requested_at": operation.cancel_requested_at,
        "parent_id": str(operation.parent_id) if operation.parent_id else None,
        "requested_by": operation.requested_by,
        "created_at": operation.created_at,
        "started_at": operation.started_at,
        "finished_at": operation.finished_at,
        "updated_at": operation.updated_at,
    }


def request_cancel(session: Session, operation: Operation, *, actor: str) -> Operation:
    """Ask ``operation`` to stop (queued: cancelled now; running: at its next step boundary)
    and audit who asked. :class:`~tenantry.errors.Conflict` once it is over. A kind with its
    own cancel (a provisioning job's store is marked failed too) is cancelled its own way."""
    if (
        isinstance(operation, ProvisioningJob)
        and lifecycle_status(operation) not in FINISHED_STATUSES
    ):
        return provisioning.cancel_job(session, operation, actor=actor)
    status = cancel_in(session, operation)
    audit.record(
        session,
        actor=actor,
        action="operation.cancel",
        target_type="operation",
        target_id=str(operation.id),
        store_id=operation.store_id,
        details={"kind": operation.kind, "status": status},
    )
    return operation
