"""Stores, the platform's users, and where each store's database lives (servers, connections)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.crypto import sealed_column
from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import GUID, CreatedAt, JsonDoc, UpdatedAt, UTCDateTime, UuidPk


class UserRole(StrEnum):
    """What a platform user may do."""

    OWNER = "owner"  # everything, including managing users
    OPERATOR = "operator"
    VIEWER = "viewer"  # reads everything, changes nothing


class DatabaseEngine(StrEnum):
    """Database engines a store database (or a database server) can run on."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"


class DatabaseStatus(StrEnum):
    """Lifecycle of a store's database."""

    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    FAILED = "failed"
    DELETED = "deleted"


class AccessMode(StrEnum):
    """How a store's database is reached at run time (``IntegrationConfig.access_mode``)."""

    #: A login tenantry created for the store, with ``service`` grants only (no DDL).
    RUNTIME_LOGIN = "runtime_login"
    #: The URL the store was connected with (connect-existing).
    GIVEN_URL = "given_url"


class StorageStatus(StrEnum):
    """State of a store's file storage connection."""

    NOT_CONFIGURED = "not_configured"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    FAILED = "failed"


class SubscriptionStatus(StrEnum):
    """State of a store's platform subscription."""

    TRIAL = "trial"
    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class User(MasterBase):
    """A platform administrator (not a store customer)."""

    __tablename__ = "users"

    id: Mapped[UuidPk]
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), default=UserRole.VIEWER)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class Store(MasterBase):
    """A tenant of the platform: one store, one database."""

    __tablename__ = "stores"
    __table_args__ = (Index(None, "subscription_plan", "subscription_status"),)

    id: Mapped[UuidPk]
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )

    # Database connection (details and secrets live in integration_configs)
    database_type: Mapped[str | None] = mapped_column(String(32))
    database_host: Mapped[str | None] = mapped_column(String(255))
    database_name: Mapped[str | None] = mapped_column(String(255))
    database_status: Mapped[str] = mapped_column(
        String(32), default=DatabaseStatus.PROVISIONING, index=True
    )

    # Storage connection
    storage_type: Mapped[str | None] = mapped_column(String(32))
    storage_status: Mapped[str | None] = mapped_column(String(32))

    # Subscription (denormalised from subscriptions for fast listing)
    subscription_plan: Mapped[str] = mapped_column(String(64), default="free")
    subscription_status: Mapped[str] = mapped_column(String(32), default=SubscriptionStatus.ACTIVE)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    subscription_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Resource usage
    product_count: Mapped[int] = mapped_column(Integer, default=0)
    order_count: Mapped[int] = mapped_column(Integer, default=0)
    storage_used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    #: When the usage rollup last measured ``storage_used_bytes`` (never: ``None``).
    storage_measured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    api_calls_month: Mapped[int] = mapped_column(Integer, default=0)

    # Status
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_published: Mapped[bool] = mapped_column(Boolean, default=False)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Bumped whenever the store's connection changes (rotation, move), so every process's
    #: cached engine for the store is known to be stale without asking anyone.
    connection_version: Mapped[int] = mapped_column(Integer, default=0)
    #: The store's customer in the billing database (app "platform"); no cross-database key.
    billing_customer_id: Mapped[uuid.UUID | None] = mapped_column(GUID)
    #: The tenant schema revision the store's database was last seen at (provisioning,
    #: fleet runs, verification); ``fleet status`` counts from it without opening databases.
    schema_revision: Mapped[str | None] = mapped_column(String(64), index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why writes to the store are refused for now (a move or restore in progress), and until
    #: when at most: a crashed mover's block lapses instead of lasting forever.
    write_block_reason: Mapped[str | None] = mapped_column(String(255))
    write_block_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Data residency (seed 001): the region (and tier) of the servers the store's database
    #: may live on; ``None`` places it anywhere. Checked by provision, move and restore.
    residency_region: Mapped[str | None] = mapped_column(String(64))
    residency_tier: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class DatabaseServer(MasterBase):
    """A database server on which tenantry may create store databases."""

    __tablename__ = "database_servers"

    id: Mapped[UuidPk]
    name: Mapped[str] = mapped_column(String(63), unique=True)
    engine: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    #: Fernet token of the admin URL (the URL carries the password).
    admin_url_encrypted: Mapped[str] = sealed_column()
    #: Fernet token of the URL of a pooler (PgBouncer, transaction mode) in front of the
    #: server: stores' runtime connections go through its host and port; ``None``: direct.
    pooler_url_encrypted: Mapped[str | None] = sealed_column()
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    notes: Mapped[str | None] = mapped_column(Text)
    #: Placement labels (``servers add --region/--tier``); ``None`` matches no requirement.
    region: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str | None] = mapped_column(String(64))
    #: Capacity: placement skips a server at either bound (``None``: unbounded) or one that
    #: does not accept new stores.
    max_tenants: Mapped[int | None] = mapped_column(Integer)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    accepting: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class IntegrationConfig(MasterBase):
    """How to reach a store's database; secrets are kept encrypted apart from the rest."""

    __tablename__ = "integration_configs"

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    integration_type: Mapped[str] = mapped_column(String(32))
    database_server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("database_servers.id", ondelete="SET NULL"), index=True
    )
    #: Non-secret connection parts: host, port, database, username, sqlite path.
    config_data: Mapped[JsonDoc]
    #: Fernet token of the password or URL secret.
    secret_encrypted: Mapped[str | None] = sealed_column()
    created_by_tenantry: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The tenant database's identity instance id, to recognise it wherever it is found.
    instance_id: Mapped[str | None] = mapped_column(String(36))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: An :class:`AccessMode`; NULL for a SQLite file tenantry created (no logins apply) and
    #: for connections saved before runtime logins existed (the server's admin URL for a
    #: database tenantry created, else the given URL).
    access_mode: Mapped[str | None] = mapped_column(String(32))
    #: Whether the stored login may change the schema (probed when a database is connected;
    #: NULL: not probed). A runtime login never may.
    can_ddl: Mapped[bool | None] = mapped_column(Boolean)
    #: When the stored login's password was last set (provisioning, move, rotation).
    credentials_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The PostgreSQL schema the store lives in inside a database shared with other stores
    #: (schema per tenant); NULL when the store has its own database.
    db_schema: Mapped[str | None] = mapped_column(String(63))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
