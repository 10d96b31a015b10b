"""tenantry: a platform kit for multi-database SaaS.

The public API: :class:`Tenantry` (tenant sessions, stores, provisioning and billing for
application code), tenant resolution for web apps (``TenantMiddleware``, ``ByHost``…),
settings, the database roles and their schemas, the identity guard and the errors tenantry
raises. Everything else is importable but may change between versions.

Names are imported on first use (PEP 562), so ``import tenantry`` (and every ``tenantry``
command's start-up) does not pay for SQLAlchemy until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tenantry.version import __version__

if TYPE_CHECKING:
    from tenantry.db.identity import Identity, guard, read_identity
    from tenantry.db.schemas import Role, SchemaSpec, billing_schema, master_schema, schema_for
    from tenantry.db.tenant.store.models import Product
    from tenantry.errors import (
        ConfigurationError,
        DatabaseUnreachable,
        LimitExceeded,
        MigrationError,
        NotFound,
        NotOwner,
        SchemaMismatch,
        StoreSuspended,
        StoreUnavailable,
        TenantryError,
        UnidentifiedDatabase,
        WritesBlocked,
        WrongDatabase,
    )
    from tenantry.public.tenantry import Tenantry
    from tenantry.settings import Settings, get_settings, load_settings
    from tenantry.tenancy import (
        ByApiKey,
        ByHeader,
        ByHost,
        ByPathPrefix,
        ResolvedStore,
        TenantMiddleware,
        WsgiTenantMiddleware,
    )

#: Each public name and the module that holds it.
_HOMES = {
    "Identity": "tenantry.db.identity",
    "guard": "tenantry.db.identity",
    "read_identity": "tenantry.db.identity",
    "Role": "tenantry.db.schemas",
    "SchemaSpec": "tenantry.db.schemas",
    "billing_schema": "tenantry.db.schemas",
    "master_schema": "tenantry.db.schemas",
    "schema_for": "tenantry.db.schemas",
    "ConfigurationError": "tenantry.errors",
    "DatabaseUnreachable": "tenantry.errors",
    "LimitExceeded": "tenantry.errors",
    "MigrationError": "tenantry.errors",
    "NotFound": "tenantry.errors",
    "NotOwner": "tenantry.errors",
    "StoreSuspended": "tenantry.errors",
    "StoreUnavailable": "tenantry.errors",
    "SchemaMismatch": "tenantry.errors",
    "TenantryError": "tenantry.errors",
    "UnidentifiedDatabase": "tenantry.errors",
    "WritesBlocked": "tenantry.errors",
    "WrongDatabase": "tenantry.errors",
    "Settings": "tenantry.settings",
    "get_settings": "tenantry.settings",
    "load_settings": "tenantry.settings",
    "Tenantry": "tenantry.public.tenantry",
    # The default store schema's product: what the example storefront lists and adds.
    "Product": "tenantry.db.tenant.store.models",
    "ByApiKey": "tenantry.tenancy",
    "ByHeader": "tenantry.tenancy",
    "ByHost": "tenantry.tenancy",
    "ByPathPrefix": "tenantry.tenancy",
    "ResolvedStore": "tenantry.tenancy",
    "TenantMiddleware": "tenantry.tenancy",
    "WsgiTenantMiddleware": "tenantry.tenancy",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tenantry' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = [
    "ByApiKey",
    "ByHeader",
    "ByHost",
    "ByPathPrefix",
    "ConfigurationError",
    "DatabaseUnreachable",
    "Identity",
    "LimitExceeded",
    "MigrationError",
    "NotFound",
    "NotOwner",
    "Product",
    "ResolvedStore",
    "Role",
    "SchemaMismatch",
    "SchemaSpec",
    "Settings",
    "StoreSuspended",
    "StoreUnavailable",
    "TenantMiddleware",
    "Tenantry",
    "TenantryError",
    "UnidentifiedDatabase",
    "WritesBlocked",
    "WrongDatabase",
    "WsgiTenantMiddleware",
    "__version__",
    "billing_schema",
    "get_settings",
    "guard",
    "load_settings",
    "master_schema",
    "read_identity",
    "schema_for",
]
