"""Settings of the minimal django-tenants project bench/fleet_schemas.py measures.

The database comes from ``TENANTRY_BENCH_DJANGO_DB`` (a PostgreSQL URL, made by the bench);
``TENANTRY_BENCH_DJANGO_PROCESSES`` sets the multiprocessing executor's processes (the same
concurrency tenantry's fleet run gets).
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ.get("TENANTRY_BENCH_DJANGO_DB", "postgresql://postgres@127.0.0.1/x"))

SECRET_KEY = "bench-only-not-secret"  # a local bench project, never served
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": _url.path.lstrip("/"),
        "USER": unquote(_url.username or "postgres"),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
    }
}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

SHARED_APPS = ["django_tenants", "django.contrib.contenttypes", "dt_customers"]
TENANT_APPS = ["dt_store"]
INSTALLED_APPS = [*SHARED_APPS, *[a for a in TENANT_APPS if a not in SHARED_APPS]]
TENANT_MODEL = "dt_customers.Client"
TENANT_DOMAIN_MODEL = "dt_customers.Domain"

TENANT_MULTIPROCESSING_MAX_PROCESSES = int(os.environ.get("TENANTRY_BENCH_DJANGO_PROCESSES", "4"))
# tenantry's index names (``ix_<table>_<columns>``) are longer than Django's portable limit of
# 30 characters (an Oracle one); PostgreSQL allows 63.
SILENCED_SYSTEM_CHECKS = ["models.E034"]
