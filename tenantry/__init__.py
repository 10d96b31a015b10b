"""tenantry: a platform kit for multi-database SaaS."""

__version__ = "0.1.0"
