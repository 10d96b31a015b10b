"""The public schema's models django-tenants needs: the tenant and its domains."""

from __future__ import annotations

from typing import Any

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):  # type: ignore[misc]
    """A tenant: one schema. Schemas are created (and migrated) by the bench, not on save."""

    name: models.CharField[Any, Any] = models.CharField(max_length=100)
    auto_create_schema = False


class Domain(DomainMixin):  # type: ignore[misc]
    """A host name routed to a tenant (django-tenants requires the model)."""
