"""Tables of the tenant schema served over HTTP, generated from one declaration each.

A tenant schema plug-in (``TENANTRY_TENANT_SCHEMA``) lists its own in a ``RESOURCES``
attribute; the default store schema's are :data:`tenantry.api.resources.store.STORE_RESOURCES`.
"""

from __future__ import annotations

import importlib

from tenantry.api.resources.declaration import Resource
from tenantry.errors import ConfigurationError
from tenantry.services.resource_rows import PlanLimit

#: The default tenant schema plug-in, whose resources are declared here.
DEFAULT_SCHEMA = "tenantry.db.tenant.store.plugin"

__all__ = ["PlanLimit", "Resource", "resources_of"]


def resources_of(schema_module: str) -> list[Resource]:
    """The resources the tenant schema plug-in ``schema_module`` serves: its ``RESOURCES``
    (none when it has no such attribute); the store schema's for the default one."""
    if schema_module == DEFAULT_SCHEMA:
        from tenantry.api.resources.store import STORE_RESOURCES

        return STORE_RESOURCES
    module = importlib.import_module(schema_module)
    declared = getattr(module, "RESOURCES", ())
    if not all(isinstance(r, Resource) for r in declared):
        raise ConfigurationError(
            f"tenant schema plug-in {schema_module!r}: RESOURCES must be a list of "
            "tenantry.api.resources.Resource.",
            "Declare each table as Resource(Model, 'path', create=…, update=…, filters=…).",
        )
    return list(declared)
