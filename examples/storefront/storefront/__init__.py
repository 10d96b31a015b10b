"""Storefront: a small store front-end API built only on tenantry's public API."""
