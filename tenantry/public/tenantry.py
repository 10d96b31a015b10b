"""``Tenantry``: the one object application code needs, one per process.

It wraps the platform tenantry's own adapters run on (:class:`~tenantry.runtime.Platform`:
settings, master and billing engines, the secret box and the tenant router with its LRU of
engines), so a tenant session here obeys the same identity check, engine bound
(``TENANTRY_MAX_ENGINES``) and suspension rules as the HTTP API.

    app = Tenantry.from_env()
    with app.tenant_session("my-shop") as session:
        session.add(Product(...))          # committed on exit, rolled back on error
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from tenantry.db.master.models import ProvisioningMode
from tenantry.db.tenant_sessions import TenantSession
from tenantry.operations import provision_request
from tenantry.operations.dispatch import Dispatcher, InProcessDispatcher
from tenantry.operations.provision_shared import SharedProvisioned, provision_shared_store
from tenantry.public.billing_api import BillingApi
from tenantry.public.provision_handle import ProvisionHandle
from tenantry.public.store_rules import PRODUCT_COUNT, StoreRules
from tenantry.public.stores_api import StoresApi
from tenantry.runtime import Platform, open_dispatcher
from tenantry.services import stores
from tenantry.services.async_routing import AsyncTenantRouter
from tenantry.services.audit import app_actor
from tenantry.services.routing import StoreRoute
from tenantry.settings import Settings, load_settings
from tenantry.tenancy.resolution_cache import ResolutionCache

if TYPE_CHECKING:
    from tenantry.public.schema_check import SchemaState
    from tenantry.tenancy.resolver import ResolvedStore, TenantResolver
    from tenantry.tenancy.strategies import Strategy


class Tenantry:
    """Settings, engines and the dispatcher of one process, for application code."""

    def __init__(
        self, platform: Platform, *, dispatcher: Dispatcher | None = None, inline: bool = False
    ) -> None:
        """Wrap an open ``platform`` (closed by :meth:`close`). Durable work goes to
        ``dispatcher``, else to a runner in this process (``inline``), else to the
        configured queue that ``tenantry worker`` serves."""
        self.platform = platform
        self._dispatcher = dispatcher
        self._dispatcher_lock = threading.Lock()
        self._inline = inline
        self._actor = app_actor(platform.settings.app)
        #: Which store requests name, shared by this app's resolvers; set
        #: ``app.resolution_cache.ttl`` (seconds, 0: off) before serving to change it.
        self.resolution_cache = ResolutionCache()
        self._async_router = AsyncTenantRouter(
            max_engines=platform.settings.max_engines,
            pool_size=platform.settings.tenant_pool_size,
            statement_timeout_ms=platform.settings.statement_timeout_ms or None,
        )

    @classmethod
    def from_env(cls, *, inline: bool = False) -> Tenantry:
        """Open from the environment (``DATABASE_URL``, ``TENANTRY_*``; see the README).
        ``inline=True`` runs provisioning in this process instead of a worker."""
        return cls.from_settings(load_settings(), inline=inline)

    @classmethod
    def from_settings(cls, settings: Settings, *, inline: bool = False) -> Tenantry:
        """Open from ``settings``: master and billing must be initialised and at head."""
        return cls(Platform.open(settings, runtime=True), inline=inline)

    @staticmethod
    def check_schema(
        role: str, *, expects: str, as_app: str, settings: Settings | None = None
    ) -> SchemaState:
        """A consumer app's start-up check (seed 003): ``role``'s database (``"billing"``) is
        at revision ``expects`` and matches the models, else
        :class:`~tenantry.errors.SchemaMismatch` saying who must act. Call it before
        :meth:`from_env`; it never writes (see :mod:`~tenantry.public.schema_check`)."""
        from tenantry.public.schema_check import check_schema

        return check_schema(role, expects=expects, as_app=as_app, settings=settings)

    @property
    def settings(self) -> Settings:
        """The settings this process runs with."""
        return self.platform.settings

    # ---------------------------------------------------------------- databases

    def tenant_engine(self, slug: str | uuid.UUID) -> Engine:
        """The engine of store ``slug``'s database (shared, pooled; do not dispose it).
        :class:`~tenantry.errors.NotFound` for an unknown store,
        :class:`~tenantry.errors.StoreSuspended` for a suspended one. Work on it directly
        skips the write blocks and plan limits :meth:`tenant_session` enforces."""
        with self.platform.sessions() as master:
            return self.platform.router.engine(master, stores.get_store(master, slug))

    @contextmanager
    def tenant_session(self, slug: str | uuid.UUID, *, writing: bool = False) -> Iterator[Session]:
        """A session on store ``slug``'s own database: committed when the block ends,
        rolled back if it raises. Writes obey the HTTP API's rules
        (:mod:`~tenantry.public.store_rules`): :class:`~tenantry.errors.WritesBlocked`
        while the store's database is moved or restored (reads go on),
        :class:`~tenantry.errors.LimitExceeded` past the plan's limits. ``writing=True``
        refuses a blocked store at once, as the API refuses a POST before running it."""
        with self.platform.sessions() as master:
            store = stores.get_store(master, slug)
            engine = self.platform.router.engine(master, store)
            rules = StoreRules.read(master, store, writing=writing)
        # Begun by its first statement (not an explicit begin), so that statement is sent
        # again if the server ended the pooled connection as it was taken (TenantSession).
        with TenantSession(engine, expire_on_commit=False) as session:
            rules.watch(session)
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            if rules.counts_changed:
                count = session.scalar(PRODUCT_COUNT) if rules.products_changed else None
                rules.record(self.platform, None if count is None else int(count))

    @asynccontextmanager
    async def tenant_async_session(
        self, slug: str | uuid.UUID, *, writing: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """An :class:`~sqlalchemy.ext.asyncio.AsyncSession` on the store's database over a
        native async driver, committed on exit, rolled back on error, with the same write
        rules as :meth:`tenant_session`. Use it from one event loop: async engines are
        bound to the loop that opened them."""
        # Master is read through the sync engine (one indexed row); the store's own
        # database, where the application's work runs, is only ever touched asynchronously.
        route, rules = await asyncio.to_thread(self._route, slug, writing)
        engine = await self._async_router.engine(route)
        # As tenant_session: begun by its first statement, which TenantSession sends again
        # if the server ended the pooled connection as it was taken.
        async with AsyncSession(
            engine, expire_on_commit=False, sync_session_class=TenantSession
        ) as session:
            rules.watch(session.sync_session)
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            if rules.counts_changed:
                count = await session.scalar(PRODUCT_COUNT) if rules.products_changed else None
                await asyncio.to_thread(
                    rules.record, self.platform, None if count is None else int(count)
                )

    def _route(self, slug: str | uuid.UUID, writing: bool) -> tuple[StoreRoute, StoreRules]:
        with self.platform.sessions() as master:
            store = stores.get_store(master, slug)
            route = self.platform.router.route(master, store)
            return route, StoreRules.read(master, store, writing=writing)

    @contextmanager
    def master_session(self) -> Iterator[Session]:
        """A session on master (stores, plans, usage): committed on exit. Tenantry's own
        tables: read them freely, change them through ``app.stores`` and the CLI."""
        with self.platform.writer_sessions.begin() as session:
            yield session

    @contextmanager
    def billing_session(self) -> Iterator[Session]:
        """A session on the billing database: committed on exit, rolled back on error."""
        with self.platform.billing_writer_sessions.begin() as session:
            yield session

    # ---------------------------------------------------------------- control plane

    @cached_property
    def stores(self) -> StoresApi:
        """Create, find, suspend and resume stores; their custom domains."""
        return StoresApi(self.platform, self._actor, on_change=self.resolution_cache.clear)

    @cached_property
    def billing(self) -> BillingApi:
        """Billing customers (``billing.customers.create``) and the billing service."""
        from tenantry.billing.service import BillingService

        service = BillingService(self.platform.billing_sessions, self.platform.box)
        return BillingApi(service, self.platform.settings.app)

    @property
    def dispatcher(self) -> Dispatcher:
        """Where durable work (provisioning) goes; opened on first use."""
        with self._dispatcher_lock:  # threads provisioning at once share one dispatcher
            if self._dispatcher is None:
                self._dispatcher = (
                    InProcessDispatcher(self.platform, background=True, name="app:")
                    if self._inline
                    else open_dispatcher(self.platform.settings)
                )
            return self._dispatcher

    def provision(
        self, slug: str | uuid.UUID, *, server: str | None = None, url: str | None = None
    ) -> ProvisionHandle:
        """Create the store's database (a SQLite file in the data dir, or on registered
        ``server``), or use the existing empty database at ``url``; returns at once with a
        handle: ``.wait()`` follows it, ``.status`` / ``.progress`` say where it is."""
        mode = ProvisioningMode.CONNECT_EXISTING if url else ProvisioningMode.CREATE_NEW
        dispatcher = self.dispatcher
        requested = provision_request.request(
            self.platform, dispatcher, slug, mode=mode, server=server, url=url, actor=self._actor
        )
        runner = dispatcher if isinstance(dispatcher, InProcessDispatcher) else None
        return ProvisionHandle(self.platform, requested.job_id, requested.slug, runner)

    def provision_shared(self, slug: str | uuid.UUID, target: str) -> SharedProvisioned:
        """Give the store its own schema in a shared PostgreSQL database, ``target`` being
        ``SERVER[/DATABASE]`` (a registered server; the database, ``tenantry_shared_1`` by
        default, is created when missing). A provisioning job (listed by ``tenantry jobs``),
        run here to its end; its sessions then work as any store's.
        :class:`~tenantry.errors.InvalidInput` for a MariaDB or SQLite server,
        :class:`~tenantry.errors.OperationFailed` when the job fails (nothing is left)."""
        return provision_shared_store(self.platform, slug, target, actor=self._actor)

    # ---------------------------------------------------------------- web apps

    def resolver(self, *strategies: Strategy) -> TenantResolver:
        """A resolver trying ``strategies`` in order (default: ``ByHost()``, verified custom
        domains then the ``TENANTRY_TENANT_HOST_PATTERN`` subdomain). Its answers are
        remembered for :attr:`resolution_cache`'s ttl, forgotten when ``app.stores``
        suspends, resumes or changes domains."""
        from tenantry.tenancy.resolver import TenantResolver

        return TenantResolver(self.platform, strategies, cache=self.resolution_cache)

    @cached_property
    def current_tenant_session(self) -> Callable[..., Iterator[Session]]:
        """A FastAPI dependency, ``Depends(app.current_tenant_session)``: a session on the
        request's store as the tenant middleware resolved it; committed after the route."""
        from tenantry.tenancy.fastapi_dependency import tenant_session_dependency

        return tenant_session_dependency(self)

    @cached_property
    def current_tenant_async_session(self) -> Callable[..., AsyncIterator[AsyncSession]]:
        """The async counterpart of :attr:`current_tenant_session`, for ``async def`` routes
        (one event loop per process, as uvicorn runs)."""
        from tenantry.tenancy.fastapi_dependency import tenant_async_session_dependency

        return tenant_async_session_dependency(self)

    @cached_property
    def current_store(self) -> Callable[..., ResolvedStore]:
        """A FastAPI dependency, ``Depends(app.current_store)``: the store the tenant
        middleware resolved for the request (id, slug, name, how it was found)."""
        from tenantry.tenancy.fastapi_dependency import current_store

        return current_store

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Wait for in-process work, then dispose every engine. Async engines are disposed
        by :meth:`aclose` (from their loop); here they are dropped."""
        if self._dispatcher is not None:
            self._dispatcher.close()
        self.platform.close()

    async def dispose_async_engines(self) -> None:
        """Dispose the async engines (from the event loop that used them), say before that
        loop ends; the next async session opens them again."""
        await self._async_router.dispose_all()

    @property
    def async_engines(self) -> int:
        """Async engines held now (at most ``TENANTRY_MAX_ENGINES``)."""
        return self._async_router.size

    async def aclose(self) -> None:
        """Dispose the async engines, then :meth:`close`."""
        await self.dispose_async_engines()
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Tenantry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Tenantry:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
