"""Django integration (``pip install 'tenantry[django]'``): the store of each request,
resolved as the ASGI/WSGI middlewares resolve it, and its database for views.

    MIDDLEWARE = [..., "tenantry.tenancy.django.TenantMiddleware"]
    DATABASE_ROUTERS = ["tenantry.tenancy.django.TenantDatabaseRouter"]  # for TENANT_APPS
    TENANTRY = {"RESOLVE": ["host"], "TENANT_APPS": ["shop"]}

    def products(request):
        with tenant_session(request) as session:     # SQLAlchemy, commits on exit
            ...
        Product.objects.all()                          # a shop model: on request.tenant's DB
"""

from __future__ import annotations

from tenantry.tenancy.django.config import reset, tenancy
from tenantry.tenancy.django.database import (
    TenantDatabaseRouter,
    current_store,
    tenant_db,
    tenant_session,
)
from tenantry.tenancy.django.fields import JsonColumn
from tenantry.tenancy.django.middleware import TenantMiddleware

__all__ = [
    "JsonColumn",
    "TenantDatabaseRouter",
    "TenantMiddleware",
    "current_store",
    "reset",
    "tenancy",
    "tenant_db",
    "tenant_session",
]
