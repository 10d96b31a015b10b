"""The operation record: every durable, multi-database piece of work, whatever its kind.

One row per operation (a provisioning job, a fleet run and each of its tenants, a backup, a
move…) carries what every adapter shows and what every worker needs to resume it: status,
step, progress, the lease of the process running it, a cancel request and the error. A
kind-specific record, where there is one, uses the operation's id as its own.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, case
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import GUID, CreatedAt, UpdatedAt, UTCDateTime, UuidPk


class OperationKind(StrEnum):
    """What an operation does."""

    PROVISION = "provision"
    FLEET_RUN = "fleet_run"
    BACKUP = "backup"
    BACKUP_VERIFY = "backup_verify"
    RESTORE = "restore"
    RECOVER_ROWS = "recover_rows"
    MOVE = "move"
    STORE_DELETE = "store_delete"
    INIT = "init"  # reserved: `init` creates master, so it records no operation there
    MIGRATE = "migrate"  # `db migrate` of billing or a tenant database (with its backup first)
    KEY_ROTATE = "key_rotate"
    #: `stores rotate-credentials` (and the scheduler's rotation): one per store rotated.
    STORE_CREDENTIALS = "store_credentials"
    #: `import billing`: legacy billing tables into billing under one app.
    IMPORT_BILLING = "import_billing"
    #: `import shared`: one per store whose rows are copied out of a shared database.
    IMPORT = "import"
    #: `servers drain`: every store moved off one server, one child ``move`` per store.
    DRAIN = "drain"
    #: `servers rebalance`: the stores moved to bring servers within a skew (child moves).
    REBALANCE = "rebalance"


class OperationStatus(StrEnum):
    """Where an operation is in its life."""

    QUEUED = "queued"  # recorded; no process runs it yet
    RUNNING = "running"  # a process holds its lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"  # asked to stop; its holder stops at the next step boundary
    CANCELLED = "cancelled"


#: Statuses of an operation that is not over.
ACTIVE_STATUSES = (OperationStatus.QUEUED, OperationStatus.RUNNING, OperationStatus.CANCELLING)
#: Statuses of an operation some process holds (or held, if its lease lapsed).
HELD_STATUSES = (OperationStatus.RUNNING, OperationStatus.CANCELLING)
#: Statuses of an operation that is over.
FINISHED_STATUSES = (OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED)


class ProgressUnit(StrEnum):
    """What an operation's progress counts."""

    TABLES = "tables"
    TENANTS = "tenants"
    BYTES = "bytes"
    ROWS = "rows"
    DATABASES = "databases"


class Operation(MasterBase):
    """One durable operation: what it is, where it is, and which process runs it."""

    __tablename__ = "operations"
    __table_args__: tuple[Any, ...] = (
        # find_stalled: held operations whose lease lapsed.
        Index(None, "status", "lease_expires_at"),
        # ops list: by kind and status, newest first.
        Index(None, "kind", "status", "created_at"),
        Index(None, "store_id", "created_at"),
    )

    id: Mapped[UuidPk]
    kind: Mapped[str] = mapped_column(String(32))
    #: Not a foreign key: an operation's history outlives the store it was about.
    store_id: Mapped[uuid.UUID | None] = mapped_column(GUID)
    #: What it is about, for people: a store's slug, a role, a backup scope.
    target: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=OperationStatus.QUEUED)
    step: Mapped[str | None] = mapped_column(String(64))
    progress_current: Mapped[int] = mapped_column(BigInteger, default=0)
    #: None while the total is not known yet.
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    progress_unit: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    #: How many times a process claimed it (more than one: it was resumed).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The process running it (host:pid:…) and until when; a lapsed lease means it died.
    lease_holder: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The run a per-tenant operation belongs to (a fleet run's tenants).
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), index=True
    )
    requested_by: Mapped[str] = mapped_column(String(128), default="cli")
    #: What it was asked with that a process resuming it keeps (a drain's concurrency).
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[CreatedAt] = mapped_column(index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[UpdatedAt]

    # Kinds with a record of their own load as its class (a provisioning job, a fleet run),
    # every other kind as a plain operation: the kind is set by whoever records the operation.
    __mapper_args__ = {  # noqa: RUF012 (read once by SQLAlchemy)
        "polymorphic_on": case(
            (
                kind.in_((OperationKind.PROVISION, OperationKind.FLEET_RUN, OperationKind.MOVE)),
                kind,
            ),
            else_="operation",
        ),
        "polymorphic_identity": "operation",
    }


def lifecycle_status(operation: Operation) -> str:
    """The operation's status in the operations' own words (``succeeded``…), also for a kind
    whose record shows its status in words of its own (a provisioning job's ``completed``)."""
    status: str = getattr(operation, "operation_status", operation.status)
    return status


class OperationLock(MasterBase):
    """At most one holder per key at a time (a fleet run per role, the backup scheduler), as
    a lease the holder keeps renewing, so a dead holder's lock lapses instead of blocking."""

    __tablename__ = "operation_locks"

    #: What is locked, e.g. ``fleet:tenant`` (not named "key": it holds no secret).
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The operation holding it, if the holder runs one; not a foreign key (history is pruned
    #: on its own schedule, a lock row is not).
    operation_id: Mapped[uuid.UUID | None] = mapped_column(GUID)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
