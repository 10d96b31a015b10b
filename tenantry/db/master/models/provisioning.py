"""Provisioning jobs: creating or connecting a store's database."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.crypto import sealed_column
from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import CreatedAt, UpdatedAt, UTCDateTime, UuidPk


class ProvisioningMode(StrEnum):
    """Whether provisioning creates a database or adopts an existing one."""

    CREATE_NEW = "create_new"
    CONNECT_EXISTING = "connect_existing"


class ProvisioningStatus(StrEnum):
    """Lifecycle of a provisioning job."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ProvisioningJob(MasterBase):
    """One attempt to create or connect a store's database and build its tables."""

    __tablename__ = "provisioning_jobs"
    __table_args__ = (CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),)

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[str] = mapped_column(String(32), default=ProvisioningMode.CREATE_NEW)
    status: Mapped[str] = mapped_column(String(32), default=ProvisioningStatus.QUEUED, index=True)
    step: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    tables_created: Mapped[int] = mapped_column(Integer, default=0)
    total_tables: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    database_server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("database_servers.id", ondelete="SET NULL"), index=True
    )
    #: Where the database goes, without secrets: engine, database name, host, port, user, path.
    target: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Fernet token of the password of a connect-existing URL, dropped once the connection
    #: is saved in integration_configs.
    secret_encrypted: Mapped[str | None] = sealed_column()
    #: Set before tenantry creates the database, so a failed job removes only what it made.
    database_created: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Lease of the worker running the job; an expired lease means the worker died.
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[CreatedAt]
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[UpdatedAt]
