"""The process-wide objects every adapter (API, CLI, worker) works with."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import migrations
from tenantry.db.connection_budget import connection_budget
from tenantry.db.engines import connect, make_engine, sqlite_path, writer_sessions
from tenantry.db.identity import guard
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema, tenant_schema
from tenantry.db.urls import mask
from tenantry.errors import ConfigurationError
from tenantry.services.routing import TenantRouter
from tenantry.settings import Settings

if TYPE_CHECKING:
    from tenantry.operations.dispatch import Dispatcher

#: The dispatcher adapters hand durable work to, by import path: loaded when first asked for,
#: so neither the API nor the CLI imports the worker adapter (nor its queue library) to use it.
QUEUE_DISPATCHER = "tenantry.jobs.queue:Queue"


@dataclass
class Platform:
    """Settings, the master engine and sessions, the secret box and the tenant router."""

    settings: Settings
    master_engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    router: TenantRouter
    tenant_spec: SchemaSpec
    billing_engine: Engine
    billing_sessions: sessionmaker[Session]

    @classmethod
    def open(cls, settings: Settings, *, runtime: bool = False) -> Platform:
        """Connect to master and billing after checking each is its role's database at this
        code's head revision.

        ``runtime`` (the API) gives master and billing sessions the statement timeout
        (``TENANTRY_STATEMENT_TIMEOUT_MS``); the CLI and workers run migrations, backups and
        fleet runs through theirs, which are never limited. Tenant engines always have it:
        only request-serving work goes through the router.
        """
        limit = settings.statement_timeout_ms or None
        master_limit = limit if runtime else None
        engine = _checked_engine(
            settings.master_url, master_schema(), pool_size=5, statement_timeout_ms=master_limit
        )
        try:
            billing_engine = _checked_engine(
                settings.billing_url,
                billing_schema(),
                pool_size=10,
                statement_timeout_ms=master_limit,
            )
        except BaseException:
            engine.dispose()
            raise
        box = SecretBox.from_settings(settings)
        router = TenantRouter(
            box,
            max_engines=settings.max_engines,
            pool_size=settings.tenant_pool_size,
            idle_seconds=settings.engine_idle_seconds,
            statement_timeout_ms=limit,
            budget=connection_budget(settings),
        )
        return cls(
            settings,
            engine,
            sessionmaker(engine, expire_on_commit=False),
            box,
            router,
            tenant_schema(settings.tenant_schema),
            billing_engine,
            sessionmaker(billing_engine, expire_on_commit=False),
        )

    @cached_property
    def writer_sessions(self) -> sessionmaker[Session]:
        """Master sessions for work that reads, then writes, while others write too: on
        SQLite their transactions take the write lock up front (see ``engines.writer``)."""
        return writer_sessions(self.sessions)

    @cached_property
    def billing_writer_sessions(self) -> sessionmaker[Session]:
        """Billing's counterpart of :attr:`writer_sessions`."""
        return writer_sessions(self.billing_sessions)

    def close(self) -> None:
        """Dispose every engine."""
        self.router.dispose_all()
        self.master_engine.dispose()
        self.billing_engine.dispose()


def open_dispatcher(settings: Settings) -> Dispatcher:
    """The dispatcher for ``settings``: the job queue (embedded SQLite in the data dir, or
    Redis at ``TENANTRY_QUEUE_URL``) that ``tenantry worker`` serves. Close it when done."""
    module, _, name = QUEUE_DISPATCHER.partition(":")
    factory = getattr(importlib.import_module(module), name)
    dispatcher: Dispatcher = factory(settings)
    return dispatcher


def _checked_engine(
    url: URL, spec: SchemaSpec, *, pool_size: int, statement_timeout_ms: int | None
) -> Engine:
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigurationError(
            f"the {spec.role} database {path} does not exist.", "Run `tenantry init` first."
        )
    engine = make_engine(
        url, pool_size=pool_size, statement_timeout_ms=statement_timeout_ms, role=spec.role.value
    )
    try:
        with connect(engine) as conn:
            identity = guard(conn, spec, where=mask(url))
            current = migrations.current(conn, spec)
        head = migrations.head(spec)
        if identity is None or current != head:
            raise ConfigurationError(
                f"the {spec.role} database is at revision {current or 'base'}, this code "
                f"needs {head}.",
                f"Run `tenantry init` (or `tenantry db migrate --role {spec.role}`).",
            )
    except BaseException:
        engine.dispose()
        raise
    return engine
