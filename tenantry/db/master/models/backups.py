"""The backups catalog and backup policies."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import GUID, JsonDoc, UpdatedAt, UTCDateTime, UuidPk, utcnow


class BackupStatus(StrEnum):
    """Where a backup is in its life."""

    QUEUED = "queued"  # asked for (API); a worker takes it
    RUNNING = "running"
    STORED = "stored"  # written, read back, size and hash match
    VERIFIED = "verified"  # also restored into a scratch database and checked
    FAILED = "failed"  # the dump or the upload failed; never counted as a backup
    CORRUPT = "corrupt"  # stored once, but a later check found it damaged or missing
    PRUNED = "pruned"  # deleted by retention; the row stays as history


#: Statuses of a backup that can be restored.
GOOD_BACKUP_STATUSES = (BackupStatus.STORED, BackupStatus.VERIFIED)


class Backup(MasterBase):
    """One backup of one database: where its artifact lives and what it holds."""

    __tablename__ = "backups"
    __table_args__ = (Index(None, "role", "store_id", "started_at"),)

    id: Mapped[UuidPk]
    role: Mapped[str] = mapped_column(String(16))
    #: Not a foreign key: backups outlive deleted stores.
    store_id: Mapped[uuid.UUID | None] = mapped_column(GUID)
    slug: Mapped[str | None] = mapped_column(String(63))
    engine: Mapped[str] = mapped_column(String(16))
    #: The database's name (or SQLite file name); never a URL or credentials.
    database: Mapped[str] = mapped_column(String(255))
    instance_id: Mapped[str | None] = mapped_column(String(36))
    schema_revision: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=BackupStatus.RUNNING, index=True)
    #: manual, scheduled, pre-migration, safety (before a restore) or move.
    reason: Mapped[str] = mapped_column(String(32), default="manual")
    label: Mapped[str | None] = mapped_column(String(255))
    #: A pinned backup is never pruned.
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    storage: Mapped[str] = mapped_column(String(16))
    artifact_key: Mapped[str] = mapped_column(String(512))
    manifest_key: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)  # compressed, as stored
    raw_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the dump before compression
    sha256: Mapped[str | None] = mapped_column(String(64))
    row_counts: Mapped[JsonDoc]
    tool_version: Mapped[str | None] = mapped_column(String(128))
    server_version: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    #: The last restore test: when, whether it passed, how long the restore took (the
    #: measured recovery time to set against the policy's RTO).
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verify_passed: Mapped[bool | None] = mapped_column(Boolean)
    verify_duration_ms: Mapped[int | None] = mapped_column(Integer)
    verify_error: Mapped[str | None] = mapped_column(Text)
    #: What the last restore test skipped or noted without failing (e.g. "amcheck skipped:
    #: permission denied …" for a login that is not a superuser).
    verify_notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128), default="cli")


class BackupPolicy(MasterBase):
    """How often a database is backed up and for how long backups are kept.

    ``scope`` is ``master``, ``billing``, ``tenant`` (every tenant database) or
    ``store:<slug>`` (one tenant, overriding ``tenant``). Without a row the defaults of
    :mod:`tenantry.services.backups.policies` apply.
    """

    __tablename__ = "backup_policies"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(64))
    retention_days: Mapped[int] = mapped_column(Integer)
    min_keep: Mapped[int] = mapped_column(Integer)
    max_age_hours: Mapped[int] = mapped_column(Integer)
    rto_minutes: Mapped[int] = mapped_column(Integer)
    verify_schedule: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[UpdatedAt]
