"""Moves of store databases between servers.

A move IS an operation (kind ``move``, the same id): its lifecycle (status, step, rows copied
or verified of total as its progress, lease, timestamps, error, attempts) lives in
``operations``, with the store as the operation's store and its slug as the operation's target;
``store_moves`` keeps only what is a move's own (where from, where to, its details, how long the
source is kept).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import ColumnElement, ForeignKey, Integer, String, Table
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, column_property, mapped_column, synonym

from tenantry.db.master.models.operations import Operation, OperationKind, OperationStatus
from tenantry.db.types import GUID, JsonDoc, UTCDateTime


class StoreMoveStatus(StrEnum):
    """Where a move of a store's database is, in a move's own words."""

    RUNNING = "running"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


#: The operation statuses each move status stands for: a move that failed or was cancelled
#: before its switch was rolled back (the store stays on its source).
OPERATION_STATUSES: dict[StoreMoveStatus, tuple[OperationStatus, ...]] = {
    StoreMoveStatus.RUNNING: (
        OperationStatus.QUEUED,
        OperationStatus.RUNNING,
        OperationStatus.CANCELLING,
    ),
    StoreMoveStatus.COMPLETED: (OperationStatus.SUCCEEDED,),
    StoreMoveStatus.ROLLED_BACK: (OperationStatus.FAILED, OperationStatus.CANCELLED),
}


def move_status(status: str | None) -> StoreMoveStatus:
    """The move status an operation status is shown as (a move not recorded yet is queued)."""
    status = status or OperationStatus.QUEUED
    return next(m for m, ops in OPERATION_STATUSES.items() if status in ops)


class StoreMove(Operation):
    """One move of a store's database to another server (or engine)."""

    __tablename__ = "store_moves"
    __mapper_args__ = {"polymorphic_identity": OperationKind.MOVE}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    from_config_id: Mapped[uuid.UUID] = mapped_column(GUID)
    to_config_id: Mapped[uuid.UUID | None] = mapped_column(GUID)
    to_server: Mapped[str] = mapped_column(String(63))
    #: Percent done, as the move's document shows it.
    progress: Mapped[int] = mapped_column(Integer, default=0)
    #: Row counts per table, as copied and as verified.
    details: Mapped[JsonDoc]
    #: The source database is kept read-only until then; afterwards it may be dropped.
    keep_source_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    #: The store's slug is the operation's target.
    slug = synonym("target")
    #: The move's operation status (``succeeded``, ``cancelling``…), which ``status`` shows in
    #: a move's own words.
    operation_status: Mapped[str] = column_property(Operation.__table__.c.status)

    def __init__(self, **fields: Any) -> None:
        """A move record; its kind is always ``move``."""
        fields.setdefault("kind", OperationKind.MOVE)
        super().__init__(**fields)

    @hybrid_property
    def status(self) -> str:
        """The status as ``stores move`` shows it (``completed``…); in a query, the
        operation's status column."""
        return move_status(self.operation_status)

    @status.inplace.expression
    @classmethod
    def _status_expression(cls) -> ColumnElement[str]:
        return Operation.__table__.c.status


#: The move's own table (``StoreMove`` also maps ``operations``): for statements that write
#: only the move's own columns.
store_moves_table = cast(Table, StoreMove.__table__)
