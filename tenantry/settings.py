"""Settings, read from the environment once per process (or once per CLI command)."""

from __future__ import annotations

import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from tenantry.db.urls import mask_raw, parse_url
from tenantry.errors import ConfigurationError

DEFAULT_APP = "tenantry"
KEY_FILE_NAME = "secret.key"
#: Huey drops every other character from Redis key names, so "a-b" and "ab" would share a queue.
QUEUE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


class Settings(BaseSettings):
    """tenantry's configuration. Every variable is optional; the defaults run embedded on SQLite."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    data_dir: Path = Field(Path(".tenantry"), validation_alias="TENANTRY_DATA_DIR")
    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    database_url_billing: str | None = Field(None, validation_alias="DATABASE_URL_BILLING")
    secret_keys: SecretStr | None = Field(None, validation_alias="TENANTRY_SECRET_KEYS")
    queue_url: str | None = Field(None, validation_alias="TENANTRY_QUEUE_URL")
    queue_name: str = Field("tenantry", validation_alias="TENANTRY_QUEUE_NAME")
    app: str = Field(DEFAULT_APP, validation_alias="TENANTRY_APP")
    master_owner: str = Field(DEFAULT_APP, validation_alias="TENANTRY_MASTER_OWNER")
    billing_owner: str = Field(DEFAULT_APP, validation_alias="TENANTRY_BILLING_OWNER")
    tenant_owner: str = Field(DEFAULT_APP, validation_alias="TENANTRY_TENANT_OWNER")
    tenant_schema: str = Field(
        "tenantry.db.tenant.store.plugin", validation_alias="TENANTRY_TENANT_SCHEMA"
    )
    job_lease_seconds: float = Field(
        60, gt=0, le=3600, validation_alias="TENANTRY_JOB_LEASE_SECONDS"
    )
    #: Seconds between a worker's recovery sweeps (re-enqueueing work whose lease lapsed). The
    #: default, 60, runs the sweep on the queue's own schedule each minute; any other value runs
    #: it on a timer in each worker process (tests use a few seconds).
    recovery_sweep_seconds: int = Field(
        60, ge=1, le=3600, validation_alias="TENANTRY_RECOVERY_SWEEP_SECONDS"
    )
    #: Spare tenant databases kept ready per server (and for SQLite files), cloned ahead by the
    #: scheduler so provisioning claims one instead of waiting for a copy; 0 turns it off.
    spare_databases: int = Field(2, ge=0, le=50, validation_alias="TENANTRY_SPARE_DATABASES")
    max_engines: int = Field(64, ge=1, le=10_000, validation_alias="TENANTRY_MAX_ENGINES")
    tenant_pool_size: int = Field(2, ge=1, le=100, validation_alias="TENANTRY_TENANT_POOL_SIZE")
    engine_idle_seconds: float = Field(300, gt=0, validation_alias="TENANTRY_ENGINE_IDLE_SECONDS")
    #: At most this many connections from one process to one database server, across all
    #: the tenant pools on it (a checkout waits up to TENANTRY_CONNECTION_WAIT_SECONDS for a
    #: free one, then fails with 503); 0 leaves it unbounded.
    max_connections_per_server: int = Field(
        0, ge=0, le=100_000, validation_alias="TENANTRY_MAX_CONNECTIONS_PER_SERVER"
    )
    connection_wait_seconds: float = Field(
        10, gt=0, le=600, validation_alias="TENANTRY_CONNECTION_WAIT_SECONDS"
    )
    #: Runtime connections (the API's master and billing sessions, the tenant router's
    #: engines) have the server cancel any statement running longer; 0 turns it off.
    #: Migrations, backups, fleet runs and restores are never limited.
    statement_timeout_ms: int = Field(
        30_000, ge=0, le=86_400_000, validation_alias="TENANTRY_STATEMENT_TIMEOUT_MS"
    )
    api_host: str = Field("127.0.0.1", validation_alias="TENANTRY_API_HOST")
    api_port: int = Field(8000, ge=1, le=65535, validation_alias="TENANTRY_API_PORT")
    #: The largest request body the API reads (413 beyond it).
    api_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=1024**3, validation_alias="TENANTRY_API_MAX_BODY_BYTES"
    )
    #: Where backups go: a local directory (default ``$TENANTRY_DATA_DIR/backups``) unless an
    #: S3 bucket is set. S3 credentials come from boto3's usual sources (AWS_* variables,
    #: profiles, instance roles), never from tenantry's settings.
    backup_dir: Path | None = Field(None, validation_alias="TENANTRY_BACKUP_DIR")
    backup_s3_bucket: str | None = Field(None, validation_alias="TENANTRY_BACKUP_S3_BUCKET")
    backup_s3_prefix: str = Field("tenantry", validation_alias="TENANTRY_BACKUP_S3_PREFIX")
    backup_s3_endpoint: str | None = Field(None, validation_alias="TENANTRY_BACKUP_S3_ENDPOINT")
    backup_s3_region: str | None = Field(None, validation_alias="TENANTRY_BACKUP_S3_REGION")
    #: zstd level for backup artifacts (1 fastest … 19 smallest).
    backup_zstd_level: int = Field(3, ge=1, le=19, validation_alias="TENANTRY_BACKUP_ZSTD_LEVEL")
    #: Workers (``tenantry up``) run the backup scheduler every minute unless this is off.
    backup_scheduler: bool = Field(True, validation_alias="TENANTRY_BACKUP_SCHEDULER")
    #: The scheduler rotates a store's runtime login once its password is this many days old
    #: (``stores rotate-credentials``); 0 turns the automatic rotation off.
    credential_rotation_days: int = Field(
        90, ge=0, le=3650, validation_alias="TENANTRY_CREDENTIAL_ROTATION_DAYS"
    )
    #: After ``stores move``, the source database stays (read-only) this many days.
    move_keep_source_days: int = Field(
        7, ge=0, le=365, validation_alias="TENANTRY_MOVE_KEEP_SOURCE_DAYS"
    )
    #: How long a move's write fence waits for a write transaction in flight on the source
    #: (begun before the store's writes were blocked) before it fails the move, rolled back.
    move_write_fence_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias="TENANTRY_MOVE_WRITE_FENCE_SECONDS"
    )
    #: Audit entries (master's and billing's) older than this many days are deleted by the
    #: scheduler: SOC 2 asks for a year, plus a margin for the auditor's window.
    audit_retention_days: int = Field(
        400, ge=1, le=36500, validation_alias="TENANTRY_AUDIT_RETENTION_DAYS"
    )
    #: ``api_usage_logs`` rows (one per API request) older than this many days are deleted.
    usage_retention_days: int = Field(
        90, ge=1, le=36500, validation_alias="TENANTRY_USAGE_RETENTION_DAYS"
    )
    #: The scheduler measures each store's database (``storage_used_bytes``, today's usage
    #: row) at most this often; yesterday's row is written once after midnight UTC.
    usage_refresh_minutes: int = Field(
        60, ge=1, le=1440, validation_alias="TENANTRY_USAGE_REFRESH_MINUTES"
    )
    #: Stores served on subdomains: a host pattern with one ``{slug}`` label, such as
    #: ``{slug}.example.com``, used by ``tenantry.tenancy.ByHost`` unless given one in code.
    tenant_host_pattern: str | None = Field(None, validation_alias="TENANTRY_TENANT_HOST_PATTERN")
    #: How ``provision --new`` without ``--server`` ranks the servers that may take a store:
    #: fewest stores first, or fewest measured bytes first.
    placement: Literal["least-tenants", "least-bytes"] = Field(
        "least-tenants", validation_alias="TENANTRY_PLACEMENT"
    )

    @field_validator("database_url", "database_url_billing", mode="after")
    @classmethod
    def _valid_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        setting = "DATABASE_URL" if info.field_name == "database_url" else "DATABASE_URL_BILLING"
        parse_url(value, setting=setting)  # raises ConfigurationError with a readable message
        return value.strip()

    @field_validator("queue_url", mode="after")
    @classmethod
    def _valid_queue(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = value.strip().partition("://")[0]
        if scheme not in {"redis", "rediss"}:
            raise ConfigurationError(
                f"TENANTRY_QUEUE_URL must be a redis:// or rediss:// URL, got {mask_raw(value)!r}.",
                "Unset it to use the embedded queue in the data dir.",
            )
        return value.strip()

    @field_validator("queue_name", mode="after")
    @classmethod
    def _valid_queue_name(cls, value: str) -> str:
        value = value.strip()
        if not QUEUE_NAME.fullmatch(value):
            raise ConfigurationError(
                f"TENANTRY_QUEUE_NAME must be 1 to 64 ASCII letters, digits or '_'; got {value!r}.",
                "Give every installation that shares one Redis database a name of its own, "
                "or unset it for the default 'tenantry'.",
            )
        return value

    @field_validator("app", "master_owner", "billing_owner", "tenant_owner", mode="after")
    @classmethod
    def _valid_app(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 64:
            raise ConfigurationError(
                f"app name {value!r} must be 1 to 64 characters.",
                "Set TENANTRY_APP (or the owner variable) to your application's name.",
            )
        return value

    @cached_property
    def master_url(self) -> URL:
        """The master database URL (``DATABASE_URL`` or the embedded SQLite file)."""
        raw = self.database_url or f"sqlite:///{self.data_dir / 'master.db'}"
        return parse_url(raw, setting="DATABASE_URL")

    @cached_property
    def billing_url(self) -> URL:
        """The billing database URL (``DATABASE_URL_BILLING`` or the embedded SQLite file)."""
        raw = self.database_url_billing or f"sqlite:///{self.data_dir / 'billing.db'}"
        return parse_url(raw, setting="DATABASE_URL_BILLING")

    @property
    def backup_path(self) -> Path:
        """The local backup directory (used when no S3 bucket is set)."""
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

    @property
    def key_file(self) -> Path:
        """Where ``tenantry init`` keeps the generated encryption key (mode 0600)."""
        return self.data_dir / KEY_FILE_NAME

    def owner_of(self, role: str) -> str:
        """The app that owns (and alone may migrate) ``role``'s schema."""
        return {"master": self.master_owner, "billing": self.billing_owner}.get(
            role, self.tenant_owner
        )


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment now; ``overrides`` win over the environment."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "a setting"
        raise ConfigurationError(
            f"setting {where} is invalid: {first.get('msg', 'bad value')}.",
            "Fix the environment variable and run again.",
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return load_settings()
