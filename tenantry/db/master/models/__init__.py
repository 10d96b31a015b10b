"""Models of the master (control-plane) database, one module per concept.

The master database knows every store, who runs the platform, what each store pays and how
to reach each store's own database, and every durable operation run on them. Store data
itself never lives here. Every model is importable from this package.
"""

from __future__ import annotations

from tenantry.db.master.models.access import AccessRole
from tenantry.db.master.models.backups import (
    GOOD_BACKUP_STATUSES,
    Backup,
    BackupPolicy,
    BackupStatus,
)
from tenantry.db.master.models.base import MasterBase
from tenantry.db.master.models.billing import (
    ApiUsageLog,
    BillingCycle,
    BillingTransaction,
    Subscription,
    TransactionStatus,
    UsageMetric,
)
from tenantry.db.master.models.domains import StoreDomain
from tenantry.db.master.models.fleet import (
    ABANDONED_STEP,
    FleetResult,
    FleetRun,
    FleetRunStatus,
    TenantOutcome,
)
from tenantry.db.master.models.imports import ImportJob, ImportSource
from tenantry.db.master.models.logins import LoginFailure, UserSession
from tenantry.db.master.models.moves import (
    StoreMove,
    StoreMoveStatus,
    move_status,
    store_moves_table,
)
from tenantry.db.master.models.operations import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    HELD_STATUSES,
    Operation,
    OperationKind,
    OperationLock,
    OperationStatus,
    ProgressUnit,
    lifecycle_status,
)
from tenantry.db.master.models.platform import ApiKey, AuditLog, PlatformSetting, Worker
from tenantry.db.master.models.provisioning import (
    ProvisioningJob,
    ProvisioningMode,
    ProvisioningStatus,
    provisioning_status,
)
from tenantry.db.master.models.spares import SpareDatabase, SpareStatus
from tenantry.db.master.models.stores import (
    AccessMode,
    DatabaseEngine,
    DatabaseServer,
    DatabaseStatus,
    IntegrationConfig,
    StorageStatus,
    Store,
    SubscriptionStatus,
    User,
    UserRole,
)

metadata = MasterBase.metadata

__all__ = [
    "ABANDONED_STEP",
    "ACTIVE_STATUSES",
    "FINISHED_STATUSES",
    "GOOD_BACKUP_STATUSES",
    "HELD_STATUSES",
    "AccessMode",
    "AccessRole",
    "ApiKey",
    "ApiUsageLog",
    "AuditLog",
    "Backup",
    "BackupPolicy",
    "BackupStatus",
    "BillingCycle",
    "BillingTransaction",
    "DatabaseEngine",
    "DatabaseServer",
    "DatabaseStatus",
    "FleetResult",
    "FleetRun",
    "FleetRunStatus",
    "ImportJob",
    "ImportSource",
    "IntegrationConfig",
    "LoginFailure",
    "MasterBase",
    "Operation",
    "OperationKind",
    "OperationLock",
    "OperationStatus",
    "PlatformSetting",
    "ProgressUnit",
    "ProvisioningJob",
    "ProvisioningMode",
    "ProvisioningStatus",
    "SpareDatabase",
    "SpareStatus",
    "StorageStatus",
    "Store",
    "StoreDomain",
    "StoreMove",
    "StoreMoveStatus",
    "Subscription",
    "SubscriptionStatus",
    "TenantOutcome",
    "TransactionStatus",
    "UsageMetric",
    "User",
    "UserRole",
    "UserSession",
    "Worker",
    "lifecycle_status",
    "metadata",
    "move_status",
    "provisioning_status",
    "store_moves_table",
]
