"""The schema of each database role, and how the tenant schema is plugged in."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, String, TableClause, column, table

from tenantry.errors import ConfigurationError

PACKAGE_DIR = Path(__file__).resolve().parent


class Role(StrEnum):
    """What a managed database is for."""

    MASTER = "master"
    BILLING = "billing"
    TENANT = "tenant"


@dataclass(frozen=True)
class SchemaSpec:
    """Everything tenantry needs to create, migrate and check one role's databases."""

    role: Role
    name: str  # the schema's own name: "master", "billing", or the tenant plug-in's ("store")
    metadata: MetaData
    migrations: Path  # an Alembic script directory (env.py, versions/)
    #: Writes a new tenant database's initial data; must be idempotent (run again after a
    #: crash, it adds only what is missing).
    seed: Callable[[Connection, dict[str, Any]], None] | None = field(default=None, compare=False)

    @property
    def version_table(self) -> str:
        """Each role keeps its revision in its own table, so roles can never share one."""
        return f"tenantry_{self.role.value}_version"


def version_rows(version_table: str) -> TableClause:
    """A role's version table as Alembic makes it (one column, ``version_num``), for
    statements built once and cached by the table's name."""
    return table(version_table, column("version_num", String))


@cache
def master_schema() -> SchemaSpec:
    """The control-plane schema."""
    from tenantry.db.master.models import metadata

    return SchemaSpec(Role.MASTER, "master", metadata, PACKAGE_DIR / "master" / "migrations")


@cache
def billing_schema() -> SchemaSpec:
    """The standalone billing (accounts-receivable) schema."""
    from tenantry.db.billing.models import metadata

    return SchemaSpec(Role.BILLING, "billing", metadata, PACKAGE_DIR / "billing" / "migrations")


@cache
def tenant_schema(module_name: str) -> SchemaSpec:
    """Load the tenant schema plug-in ``module_name``.

    A plug-in is any importable module with three attributes: ``SCHEMA_NAME`` (str),
    ``metadata`` (the SQLAlchemy ``MetaData`` of its models) and ``MIGRATIONS`` (the path of
    an Alembic script directory whose ``env.py`` calls ``tenantry.db.alembic_env.run()``),
    and optionally ``seed(connection, store)``, which writes a new tenant's initial data.
    """
    hint = "Set TENANTRY_TENANT_SCHEMA to a module exposing SCHEMA_NAME, metadata and MIGRATIONS."
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"tenant schema plug-in {module_name!r} cannot be imported: {exc}.", hint
        ) from None
    name = getattr(module, "SCHEMA_NAME", None)
    metadata = getattr(module, "metadata", None)
    migrations = getattr(module, "MIGRATIONS", None)
    if not isinstance(name, str) or not isinstance(metadata, MetaData) or migrations is None:
        raise ConfigurationError(
            f"tenant schema plug-in {module_name!r} lacks SCHEMA_NAME, metadata or MIGRATIONS.",
            hint,
        )
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
        raise ConfigurationError(
            f"tenant schema plug-in {module_name!r}: SCHEMA_NAME {name!r} must be 1 to 32 "
            "lowercase letters, digits or underscores, starting with a letter.",
            hint,
        )
    path = Path(migrations)
    if not (path / "env.py").is_file():
        raise ConfigurationError(
            f"tenant schema plug-in {module_name!r}: {path} is not an Alembic script directory "
            "(no env.py).",
            hint,
        )
    seed = getattr(module, "seed", None)
    return SchemaSpec(Role.TENANT, name, metadata, path, seed if callable(seed) else None)


def schema_for(role: Role | str, tenant_module: str) -> SchemaSpec:
    """The schema of ``role``; tenant roles use the configured plug-in module."""
    role = Role(role)
    if role is Role.MASTER:
        return master_schema()
    if role is Role.BILLING:
        return billing_schema()
    return tenant_schema(tenant_module)
