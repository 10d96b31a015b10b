"""Fleet runs: migrations of every tenant database, one outcome per tenant.

A fleet run IS an operation (kind ``fleet_run``, the same id): its lifecycle (status, lease,
tenants done of total as its progress, timestamps, error) lives in ``operations``;
``fleet_runs`` keeps what is the run's own (role, goal revision, outcome counts, options) and
``fleet_results`` one row per tenant outcome. Tenants are not operations of their own: a row
in ``operations`` per tenant would double master's writes per tenant, which is the cost a
fleet run is measured by (see the README's design notes).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, ForeignKey, Index, Integer, String, Text
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, column_property, mapped_column, synonym

from tenantry.db.master.models.base import MasterBase
from tenantry.db.master.models.operations import Operation, OperationKind, OperationStatus
from tenantry.db.types import GUID, JsonDoc, UTCDateTime, UuidPk, utcnow


class FleetRunStatus(StrEnum):
    """Where a fleet migration run is, as ``fleet`` commands show it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every tenant at the target
    FAILED = "failed"  # at least one tenant failed; the others were migrated
    ABANDONED = "abandoned"  # its process died; it was failed by recovery or a later run
    CANCELLING = "cancelling"  # asked to stop; it stops at the next tenant boundary
    CANCELLED = "cancelled"  # stopped as asked; tenants not started were left untouched


#: The step of a run whose process died (an operation ``failed`` at this step is abandoned).
ABANDONED_STEP = "abandoned"


class TenantOutcome(StrEnum):
    """What a fleet run did to one tenant database."""

    MIGRATED = "migrated"
    CURRENT = "current"  # already at the target: nothing run
    FAILED = "failed"
    REFUSED = "refused"  # identity, owner or destructive-change check said no; nothing run
    SKIPPED = "skipped"  # not started: the run was cancelled first; the database untouched


def fleet_run_status(operation_status: str, step: str | None) -> FleetRunStatus:
    """The fleet status an operation's status (and step) is shown as."""
    if operation_status == OperationStatus.FAILED and step == ABANDONED_STEP:
        return FleetRunStatus.ABANDONED
    if operation_status == OperationStatus.QUEUED:
        return FleetRunStatus.RUNNING
    return FleetRunStatus(operation_status)


class FleetRun(Operation):
    """One ``fleet migrate`` over the tenant databases."""

    __tablename__ = "fleet_runs"
    __mapper_args__ = {"polymorphic_identity": OperationKind.FLEET_RUN}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16))
    #: The revision the run migrates to (None: base); the operation's ``target`` is the role.
    goal: Mapped[str | None] = mapped_column("target", String(64))
    concurrency: Mapped[int] = mapped_column(Integer)
    migrated: Mapped[int] = mapped_column(Integer, default=0)
    current: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[JsonDoc]

    #: The run's tenant count is its operation's progress total (unit: tenants).
    total = synonym("progress_total")
    #: The process running it is its operation's lease holder.
    holder = synonym("lease_holder")

    #: The run's operation status (``cancelling``…), which ``status`` shows in fleet words.
    operation_status: Mapped[str] = column_property(Operation.__table__.c.status)

    @hybrid_property
    def status(self) -> str:
        """The status as ``fleet`` commands show it (``abandoned``…); in a query, the
        operation's status column."""
        return fleet_run_status(self.operation_status, self.step)

    @status.inplace.expression
    @classmethod
    def _status_expression(cls) -> ColumnElement[str]:
        return Operation.__table__.c.status

    @property
    def done(self) -> int:
        """Tenants with an outcome (skipped ones included)."""
        return self.migrated + self.current + self.failed + self.skipped


class FleetResult(MasterBase):
    """One tenant's outcome in a fleet run."""

    __tablename__ = "fleet_results"
    __table_args__ = (Index(None, "store_id", "finished_at"),)

    id: Mapped[UuidPk]
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("fleet_runs.id", ondelete="CASCADE"), index=True
    )
    #: Not a foreign key: results outlive deleted stores.
    store_id: Mapped[uuid.UUID] = mapped_column(GUID)
    slug: Mapped[str] = mapped_column(String(63))
    from_revision: Mapped[str | None] = mapped_column(String(64))
    to_revision: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
