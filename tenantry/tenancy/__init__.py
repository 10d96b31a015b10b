"""Tenant resolution for any web app: which store a request is for, by verified custom
domain or subdomain, header, path prefix or store API key; ASGI and WSGI middlewares and a
FastAPI dependency put it (and a session on its database) in the app's hands.

    resolver = app.resolver(ByHost("{slug}.example.com"), ByHeader("X-Tenant"))
    web.add_middleware(TenantMiddleware, resolver=resolver)
"""

from __future__ import annotations

from tenantry.tenancy.asgi import TenantMiddleware
from tenantry.tenancy.resolver import ResolvedStore, TenantResolver
from tenantry.tenancy.strategies import ByApiKey, ByHeader, ByHost, ByPathPrefix, RequestFacts
from tenantry.tenancy.wsgi import WsgiTenantMiddleware

__all__ = [
    "ByApiKey",
    "ByHeader",
    "ByHost",
    "ByPathPrefix",
    "RequestFacts",
    "ResolvedStore",
    "TenantMiddleware",
    "TenantResolver",
    "WsgiTenantMiddleware",
]
