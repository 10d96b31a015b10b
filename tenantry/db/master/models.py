"""Models of the master (control-plane) database.

The master database knows every store, who runs the platform, what each store pays and how
to reach each store's own database. Store data itself never lives here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenantry.crypto import sealed_column
from tenantry.db.types import (
    GUID,
    NAMING_CONVENTION,
    TYPE_ANNOTATION_MAP,
    CreatedAt,
    Currency,
    JsonDoc,
    Money,
    UpdatedAt,
    UTCDateTime,
    UuidPk,
    utcnow,
)


class MasterBase(DeclarativeBase):
    """Declarative base of the master (control-plane) schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


# --------------------------------------------------------------------------- value sets


class UserRole(StrEnum):
    """What a platform user may do."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


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


class BillingCycle(StrEnum):
    """How often a platform subscription is billed."""

    MONTHLY = "monthly"
    ANNUAL = "annual"


class TransactionStatus(StrEnum):
    """State of a platform billing transaction."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUNDED = "refunded"


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


# --------------------------------------------------------------------------- platform users


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


# --------------------------------------------------------------------------- stores


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

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


# --------------------------------------------------------------------------- billing


class Subscription(MasterBase):
    """A store's platform plan, with its price and resource limits."""

    __tablename__ = "subscriptions"

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    plan_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default=SubscriptionStatus.ACTIVE)

    # Pricing
    price_monthly_minor: Mapped[Money]
    price_annual_minor: Mapped[Money]
    currency: Mapped[Currency]
    billing_cycle: Mapped[str] = mapped_column(String(16), default=BillingCycle.MONTHLY)

    # Limits (None means unlimited)
    max_products: Mapped[int | None] = mapped_column(Integer)
    max_orders_per_month: Mapped[int | None] = mapped_column(Integer)
    max_storage_gb: Mapped[int | None] = mapped_column(Integer)
    max_api_calls_per_month: Mapped[int | None] = mapped_column(Integer)

    # Dates
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class BillingTransaction(MasterBase):
    """One charge or refund of a store's platform subscription."""

    __tablename__ = "billing_transactions"
    __table_args__ = (UniqueConstraint("payment_method", "payment_provider_id"),)

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL"), index=True
    )
    amount_minor: Mapped[Money]
    currency: Mapped[Currency]
    status: Mapped[str] = mapped_column(String(32), default=TransactionStatus.PENDING)
    payment_method: Mapped[str | None] = mapped_column(String(32))
    payment_provider_id: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    invoice_url: Mapped[str | None] = mapped_column(String(500))
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[CreatedAt]


# --------------------------------------------------------------------------- usage


class UsageMetric(MasterBase):
    """A store's resource usage for one day."""

    __tablename__ = "usage_metrics"
    __table_args__ = (UniqueConstraint("store_id", "metric_date"),)

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    metric_date: Mapped[date] = mapped_column(Date)

    # Product metrics
    products_created: Mapped[int] = mapped_column(Integer, default=0)
    products_updated: Mapped[int] = mapped_column(Integer, default=0)
    products_deleted: Mapped[int] = mapped_column(Integer, default=0)
    total_products: Mapped[int] = mapped_column(Integer, default=0)

    # Order metrics
    orders_created: Mapped[int] = mapped_column(Integer, default=0)
    orders_total_value_minor: Mapped[Money]

    # Storage metrics
    storage_uploaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_deleted_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)

    # API metrics
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    api_errors: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[CreatedAt]


class ApiUsageLog(MasterBase):
    """One API request made against a store."""

    __tablename__ = "api_usage_logs"
    __table_args__ = (Index(None, "store_id", "created_at"),)

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_time_ms: Mapped[int | None] = mapped_column(Integer)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


# --------------------------------------------------------------------------- store databases


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
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    notes: Mapped[str | None] = mapped_column(Text)
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
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


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


# --------------------------------------------------------------------------- platform


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


# --------------------------------------------------------------------------- fleet


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


# --------------------------------------------------------------------------- backups


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


class StoreMoveStatus(StrEnum):
    """Where a move of a store's database to another server is."""

    RUNNING = "running"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


class StoreMove(MasterBase):
    """One move of a store's database to another server (or engine)."""

    __tablename__ = "store_moves"

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(GUID, index=True)
    slug: Mapped[str] = mapped_column(String(63))
    from_config_id: Mapped[uuid.UUID] = mapped_column(GUID)
    to_config_id: Mapped[uuid.UUID | None] = mapped_column(GUID)
    to_server: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), default=StoreMoveStatus.RUNNING, index=True)
    step: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    #: Row counts per table, as copied and as verified.
    details: Mapped[JsonDoc]
    error: Mapped[str | None] = mapped_column(Text)
    #: The source database is kept read-only until then; afterwards it may be dropped.
    keep_source_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


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


metadata = MasterBase.metadata
