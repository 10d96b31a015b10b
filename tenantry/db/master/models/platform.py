"""Platform-wide records: settings, the audit log, API keys and job workers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import GUID, CreatedAt, JsonDoc, UpdatedAt, UTCDateTime, UuidPk, utcnow


class PlatformSetting(MasterBase):
    """A platform-wide setting, stored as a JSON value under a key."""

    __tablename__ = "platform_settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[UpdatedAt]


class AuditLog(MasterBase):
    """An append-only record of an action taken on the platform."""

    __tablename__ = "audit_logs"

    id: Mapped[UuidPk]
    created_at: Mapped[CreatedAt] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    actor_app: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(255))
    #: Deliberately not a foreign key: audit rows outlive the stores they mention.
    store_id: Mapped[uuid.UUID | None] = mapped_column(GUID, index=True)
    details: Mapped[JsonDoc]
    ip_address: Mapped[str | None] = mapped_column(String(45))
    #: succeeded, failed or refused (services.audit.Outcome).
    outcome: Mapped[str] = mapped_column(
        String(16), default="succeeded", server_default="succeeded"
    )


class ApiKey(MasterBase):
    """A key for the platform API; only its hash is stored, its prefix identifies it."""

    __tablename__ = "api_keys"

    id: Mapped[UuidPk]
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    store_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Worker(MasterBase):
    """A job worker process, as it last reported itself (its heartbeat).

    Commands that wait for a queued job read this to tell "no worker runs" from "the job is
    slow"; a worker writes ``last_seen_at`` every few seconds while it runs.
    """

    __tablename__ = "workers"

    id: Mapped[UuidPk]
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
