"""tenantry: a platform kit for multi-database SaaS.

The public API: settings, the database roles and their schemas, the identity guard and the
errors tenantry raises. Everything else is importable but may change between versions.
"""

from tenantry.db.identity import Identity, guard, read_identity
from tenantry.db.schemas import Role, SchemaSpec, billing_schema, master_schema, schema_for
from tenantry.errors import (
    ConfigurationError,
    DatabaseUnreachable,
    MigrationError,
    NotOwner,
    SchemaMismatch,
    TenantryError,
    UnidentifiedDatabase,
    WrongDatabase,
)
from tenantry.settings import Settings, get_settings, load_settings
from tenantry.version import __version__

__all__ = [
    "ConfigurationError",
    "DatabaseUnreachable",
    "Identity",
    "MigrationError",
    "NotOwner",
    "Role",
    "SchemaMismatch",
    "SchemaSpec",
    "Settings",
    "TenantryError",
    "UnidentifiedDatabase",
    "WrongDatabase",
    "__version__",
    "billing_schema",
    "get_settings",
    "guard",
    "load_settings",
    "master_schema",
    "read_identity",
    "schema_for",
]
