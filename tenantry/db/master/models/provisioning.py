"""Provisioning jobs: creating or connecting a store's database.

A provisioning job IS an operation (kind ``provision``, the same id): its lifecycle (status,
step, tables created of total as its progress, lease, timestamps, error, message, attempts)
lives in ``operations``; ``provisioning_jobs`` keeps only what is provisioning's own.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ColumnElement, ForeignKey, Integer, String
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, column_property, mapped_column, synonym

from tenantry.crypto import sealed_column
from tenantry.db.master.models.operations import Operation, OperationKind, OperationStatus


class ProvisioningMode(StrEnum):
    """Whether provisioning creates a database or adopts an existing one."""

    CREATE_NEW = "create_new"
    CONNECT_EXISTING = "connect_existing"
    #: A schema of its own in a shared PostgreSQL database (``provision --new --shared``).
    CREATE_SHARED = "create_shared"


class ProvisioningStatus(StrEnum):
    """Lifecycle of a provisioning job, as ``jobs`` and ``/provision/{job_id}`` show it."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: The operation statuses each provisioning status stands for: a job asked to stop is
#: ``cancelled`` for its users at once, while its worker finishes cleaning up.
OPERATION_STATUSES: dict[ProvisioningStatus, tuple[OperationStatus, ...]] = {
    ProvisioningStatus.QUEUED: (OperationStatus.QUEUED,),
    ProvisioningStatus.RUNNING: (OperationStatus.RUNNING,),
    ProvisioningStatus.COMPLETED: (OperationStatus.SUCCEEDED,),
    ProvisioningStatus.FAILED: (OperationStatus.FAILED,),
    ProvisioningStatus.CANCELLED: (OperationStatus.CANCELLING, OperationStatus.CANCELLED),
}


def provisioning_status(status: str) -> ProvisioningStatus:
    """The provisioning status an operation status is shown as."""
    return next(p for p, ops in OPERATION_STATUSES.items() if status in ops)


class ProvisioningJob(Operation):
    """One attempt to create or connect a store's database and build its tables."""

    __tablename__ = "provisioning_jobs"
    __table_args__ = (CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),)
    __mapper_args__ = {"polymorphic_identity": OperationKind.PROVISION}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    #: The store again, as a foreign key: deleting a store deletes its jobs' own rows (the
    #: operation stays, as history).
    store_fk: Mapped[uuid.UUID] = mapped_column(
        "store_id", ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[str] = mapped_column(String(32), default=ProvisioningMode.CREATE_NEW)
    #: Percent done, as the job's documented ``progress``.
    progress: Mapped[int] = mapped_column(Integer, default=0)
    database_server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("database_servers.id", ondelete="SET NULL"), index=True
    )
    #: Where the database goes, without secrets: engine, database name, host, port, user, path.
    destination: Mapped[dict[str, Any] | None] = mapped_column("target", JSON)
    #: Fernet token of the password of a connect-existing URL, dropped once the connection
    #: is saved in integration_configs.
    secret_encrypted: Mapped[str | None] = sealed_column()
    #: Set before tenantry creates the database, so a failed job removes only what it made.
    database_created: Mapped[bool] = mapped_column(Boolean, default=False)

    #: The job's tables created of total are its operation's progress (unit: tables).
    tables_created = synonym("progress_current")
    total_tables = synonym("progress_total")
    #: The worker running the job is its operation's lease holder.
    worker_id = synonym("lease_holder")

    #: The job's operation status (``succeeded``, ``cancelling``…), which ``status`` shows in
    #: provisioning's own words.
    operation_status: Mapped[str] = column_property(Operation.__table__.c.status)

    @hybrid_property
    def status(self) -> str:
        """The status as ``jobs`` and ``/provision/{job_id}`` show it (``completed``…); in a
        query, the operation's status column."""
        return provisioning_status(self.operation_status)

    @status.inplace.expression
    @classmethod
    def _status_expression(cls) -> ColumnElement[str]:
        return Operation.__table__.c.status

    @property
    def public_status(self) -> ProvisioningStatus:
        """The status as ``jobs`` and ``/provision/{job_id}`` show it."""
        return provisioning_status(self.operation_status)
