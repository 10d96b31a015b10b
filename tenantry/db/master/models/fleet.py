"""Fleet runs: migrations of every tenant database, one outcome per tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import GUID, JsonDoc, UTCDateTime, UuidPk, utcnow


class FleetRunStatus(StrEnum):
    """Where a fleet migration run is."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every tenant at the target
    FAILED = "failed"  # at least one tenant failed; the others were migrated
    ABANDONED = "abandoned"  # its process died; a later run took over


class TenantOutcome(StrEnum):
    """What a fleet run did to one tenant database."""

    MIGRATED = "migrated"
    CURRENT = "current"  # already at the target: nothing run
    FAILED = "failed"
    REFUSED = "refused"  # identity, owner or destructive-change check said no; nothing run


class FleetRun(MasterBase):
    """One ``fleet migrate`` over the tenant databases."""

    __tablename__ = "fleet_runs"

    id: Mapped[UuidPk]
    role: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=FleetRunStatus.RUNNING, index=True)
    holder: Mapped[str] = mapped_column(String(128))  # host:pid of the process running it
    concurrency: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer, default=0)
    migrated: Mapped[int] = mapped_column(Integer, default=0)
    current: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    options: Mapped[JsonDoc]


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


class FleetLock(MasterBase):
    """At most one fleet run per role at a time; a lease the run keeps renewing, so a killed
    run's lock expires instead of blocking forever."""

    __tablename__ = "fleet_locks"

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(GUID)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
