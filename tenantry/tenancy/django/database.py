"""The store's database for Django code: a SQLAlchemy session (``tenant_session(request)``,
with every rule of ``Tenantry.tenant_session``), and a per-store Django database alias so
models of ``TENANTRY["TENANT_APPS"]`` are read and written on the request's store.

The alias is opened on the store's runtime login after tenantry has checked the database's
identity (once per engine, as for every tenant engine); it follows credential rotation (a
new connection version is a new alias). Django never migrates it: the tenant schema is
tenantry's. Supported for stores on SQLite and PostgreSQL; Django ORM work skips the write
blocks and plan limits that ``tenant_session`` enforces.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.http import HttpRequest
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db.identity import IDENTITY_TABLE
from tenantry.db.schemas import Role
from tenantry.errors import WrongDatabase
from tenantry.services import stores
from tenantry.tenancy.fastapi_dependency import READS
from tenantry.tenancy.resolver import ResolvedStore

if TYPE_CHECKING:
    from tenantry.tenancy.django.config import DjangoTenancy


@dataclass
class _Active:
    """The store of the request being served, and its alias once a model asked for it."""

    setup: DjangoTenancy
    store: ResolvedStore
    alias: str | None = None


#: The store of the request being served in this thread (or task), for the router.
_active: ContextVar[_Active | None] = ContextVar("tenantry_django_store", default=None)
_aliases_lock = threading.Lock()
#: Aliases whose identity Django's own connection has confirmed.
_verified: set[str] = set()
ALIAS_PREFIX = "tenantry_"


@contextmanager
def activated(setup: DjangoTenancy, store: ResolvedStore) -> Iterator[None]:
    """Make ``store`` the one tenant-app models use while the block runs."""
    token = _active.set(_Active(setup, store))
    try:
        yield
    finally:
        _active.reset(token)


def current_store(request: HttpRequest) -> ResolvedStore:
    """The store the middleware resolved for ``request``."""
    store = getattr(request, "tenant", None)
    if not isinstance(store, ResolvedStore):
        raise ImproperlyConfigured(
            "no store was resolved for this request: add "
            "'tenantry.tenancy.django.TenantMiddleware' to MIDDLEWARE (and check the path "
            "is not in TENANTRY['EXEMPT'])."
        )
    return store


@contextmanager
def tenant_session(request: HttpRequest) -> Iterator[Session]:
    """A SQLAlchemy session on the request's store: committed when the block ends, rolled
    back if it raises; writes (any method but GET/HEAD/OPTIONS) refused at once while the
    store's writes are blocked, plan limits enforced (the middleware answers those 503/403)."""
    from tenantry.tenancy.django.config import tenancy

    store = current_store(request)
    with tenancy().app.tenant_session(store.id, writing=request.method not in READS) as session:
        yield session


def _django_database(url: URL) -> dict[str, Any]:
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ImproperlyConfigured("a store on an in-memory SQLite database has no alias.")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.database}
    if backend == "postgresql":
        options = {k: v for k, v in url.query.items() if isinstance(v, str)}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.database or "",
            "USER": url.username or "",
            "PASSWORD": url.password or "",
            "HOST": url.host or "",
            "PORT": str(url.port or ""),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"Django models on a {backend} store are not supported (SQLite and PostgreSQL are): "
        "use tenant_session(request) for this store."
    )


def tenant_db(request: HttpRequest) -> str:
    """The Django database alias of the request's store (``Model.objects.using(alias)``;
    the router picks it by itself for ``TENANT_APPS`` models)."""
    from tenantry.tenancy.django.config import tenancy

    return _alias(tenancy(), current_store(request))


def _alias(setup: DjangoTenancy, store: ResolvedStore) -> str:
    platform = setup.app.platform
    with platform.sessions() as master:
        row = stores.get_store(master, store.id)
        platform.router.engine(master, row)  # identity checked once per engine; refuses
        route = platform.router.route(master, row)  # a suspended store
    alias = f"{ALIAS_PREFIX}{store.id.hex}_v{route.connection_version}"
    if alias in _verified:
        return alias
    with _aliases_lock:
        if alias not in _verified:
            configured = connections.configure_settings(
                {"default": {}, alias: _django_database(route.url)}
            )
            connections.settings[alias] = configured[alias]
            try:
                _expect_identity(alias, route.instance_id, store.slug)
            except BaseException:
                connections[alias].close()
                del connections[alias]  # this thread's wrapper, made with these settings
                del connections.settings[alias]
                raise
            _verified.add(alias)
    return alias


def _expect_identity(alias: str, instance_id: str | None, slug: str) -> None:
    """What Django's own connection reaches is the store's database (the one tenantry
    checked through SQLAlchemy), not merely a database at the same URL."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT role, instance_id FROM {IDENTITY_TABLE}")
            found = [(str(role), str(instance)) for role, instance in cursor.fetchall()]
    except DatabaseError:
        found = []
    matches = [r for r in found if r[0] == Role.TENANT.value]
    if len(matches) != 1 or instance_id not in (None, matches[0][1]):
        raise WrongDatabase(
            f"Django's connection for store {slug!r} does not reach the store's database "
            f"(it sees identity {found or 'none'}), so its models are not served there.",
            "Use tenant_session(request) for this store, and report the store's connection.",
        )


class TenantDatabaseRouter:
    """``DATABASE_ROUTERS = ["tenantry.tenancy.django.TenantDatabaseRouter"]``: models of
    ``TENANTRY["TENANT_APPS"]`` go to the request's store; outside a resolved request they
    are refused rather than sent to ``default``. Django migrates none of them."""

    def _tenant_app(self, model: type[Any]) -> bool:
        from tenantry.tenancy.django.config import tenancy

        return model._meta.app_label in tenancy().tenant_apps

    def _store_alias(self, model: type[Any]) -> str | None:
        if not self._tenant_app(model):
            return None
        active = _active.get()
        if active is None:
            raise ImproperlyConfigured(
                f"{model.__name__} lives in a store's database, and no store is active: "
                "use it in a request resolved by TenantMiddleware, or .using(alias)."
            )
        if active.alias is None:  # once per request: master is read, the identity checked
            active.alias = _alias(active.setup, active.store)
        return active.alias

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        """The request's store for tenant-app models."""
        return self._store_alias(model)

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        """The request's store for tenant-app models."""
        return self._store_alias(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        """Tenant-app rows relate only to rows of the same store."""
        if self._tenant_app(type(obj1)) or self._tenant_app(type(obj2)):
            return bool(obj1._state.db == obj2._state.db)
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        """Never: the tenant schema is tenantry's, and stores' aliases hold nothing else."""
        from tenantry.tenancy.django.config import tenancy

        if db.startswith(ALIAS_PREFIX) or app_label in tenancy().tenant_apps:
            return False
        return None
