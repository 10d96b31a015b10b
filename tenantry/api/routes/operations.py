"""Every durable operation over HTTP: list, show, cancel.

An admin key sees every operation; a store key sees its own store's only (another store's is a
404, as for stores). Cancelling takes an admin key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from tenantry.api.deps import AdminDep, KeyDep, MasterDep, is_admin, visible_store
from tenantry.api.fields import Offset
from tenantry.api.openapi import raises
from tenantry.db.master.models import (
    ApiKey,
    Operation,
    OperationKind,
    OperationStatus,
    lifecycle_status,
)
from tenantry.errors import NotFound
from tenantry.operations import records
from tenantry.operations.kit import progress_of
from tenantry.services.audit import key_actor

router = APIRouter(prefix="/operations", tags=["operations"])

OperationRef = Annotated[
    str, Path(max_length=64, description="The operation's id, or its start (hex).")
]


class ProgressOut(BaseModel):
    """Where an operation is: its step, how far (``current`` of ``total`` ``unit``: tables,
    tenants, bytes or rows; ``total`` null while unknown) and its last message."""

    step: str | None
    current: int
    total: int | None
    unit: str | None
    message: str | None


class OperationOut(BaseModel):
    """One durable operation: what, on what, where it is, and how it ended."""

    id: uuid.UUID
    kind: str
    target: str | None
    store_id: uuid.UUID | None
    status: str
    stalled: bool = Field(description=records.STALLED_NOTE.capitalize())
    progress: ProgressOut
    error: str | None
    attempts: int
    parent_id: uuid.UUID | None
    requested_by: str
    cancel_requested_at: datetime | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class OperationList(BaseModel):
    """A page of operations, newest first."""

    items: list[OperationOut]
    total: int


def operation_out(operation: Operation) -> OperationOut:
    """The API view of an operation (never its holder's host name)."""
    return OperationOut(
        id=operation.id,
        kind=operation.kind,
        target=operation.target,
        store_id=operation.store_id,
        status=lifecycle_status(operation),
        stalled=records.is_stalled(operation),
        progress=ProgressOut(**progress_of(operation).as_dict()),
        error=operation.error,
        attempts=operation.attempts,
        parent_id=operation.parent_id,
        requested_by=operation.requested_by,
        cancel_requested_at=operation.cancel_requested_at,
        lease_expires_at=operation.lease_expires_at,
        created_at=operation.created_at,
        started_at=operation.started_at,
        finished_at=operation.finished_at,
        updated_at=operation.updated_at,
    )


def _scope(key: ApiKey) -> uuid.UUID | None:
    """The only store whose operations ``key`` may see, or None for an admin key (all)."""
    if is_admin(key):
        return None
    if key.store_id is None:  # a key of no store (a billing app's) sees none
        raise NotFound("no operation is visible to this key.")
    return key.store_id


@router.get("", response_model=OperationList)
@raises(404)  # an unknown store, or another store's for a store key
def list_operations(
    master: MasterDep,
    key: KeyDep,
    kind: OperationKind | None = Query(None, description="Only operations of this kind."),
    operation_status: OperationStatus | None = Query(
        None, alias="status", description="Only operations in this status."
    ),
    store: str | None = Query(None, max_length=63, description="Only this store's (slug or id)."),
    parent: uuid.UUID | None = Query(None, description="Only the children of this operation."),
    limit: int = Query(50, ge=1, le=1000),
    offset: Offset = 0,
) -> OperationList:
    """Operations the key may see, newest first: all for an admin key, its store's for a
    store key."""
    if store is not None:  # another store's is a 404 for a store key
        store_id: uuid.UUID | None = visible_store(master, key, store).id
    elif not is_admin(key) and key.store_id is None:
        return OperationList(items=[], total=0)
    else:
        store_id = _scope(key)
    found, total = records.list_operations(
        master,
        kind=kind,
        status=operation_status,
        store_id=store_id,
        parent_id=parent,
        limit=limit,
        offset=offset,
    )
    return OperationList(items=[operation_out(op) for op in found], total=total)


@router.get("/{operation_id}", response_model=OperationOut)
def show_operation(operation_id: OperationRef, master: MasterDep, key: KeyDep) -> OperationOut:
    """One operation (id or unique prefix): its status and progress, to follow it."""
    try:
        scope = _scope(key)
    except NotFound:
        raise NotFound(f"no operation {operation_id!r}.") from None
    return operation_out(records.get_operation(master, operation_id, store_id=scope))


@router.post("/{operation_id}/cancel", response_model=OperationOut)
def cancel_operation(operation_id: OperationRef, master: MasterDep, key: AdminDep) -> OperationOut:
    """Ask an operation to stop: a queued one is cancelled at once, a running one becomes
    ``cancelling`` and stops at its next step boundary, leaving nothing half-done."""
    operation = records.get_operation(master, operation_id)
    records.request_cancel(master, operation, actor=key_actor(key.prefix))
    master.commit()
    return operation_out(operation)
