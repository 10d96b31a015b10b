"""The FastAPI application."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

from fastapi import APIRouter, FastAPI

from tenantry.api import errors, idempotency, openapi, webhook_receiver
from tenantry.api.body_limit import BodyLimit
from tenantry.api.group_commit import IngestWriter
from tenantry.api.http_metrics import HttpMetrics
from tenantry.api.principal_scope import PrincipalScope
from tenantry.api.resources import resources_of
from tenantry.api.resources.router import resource_router
from tenantry.api.routes import (
    apikeys,
    audit,
    auth,
    backups,
    billing,
    fleet,
    imports,
    monitoring,
    operations,
    server_drain,
    servers,
    store_domains,
    store_move,
    stores,
    tenant_data,
    webhooks,
)
from tenantry.api.usage_writer import UsageWriter
from tenantry.console import app as console
from tenantry.files import restrict_new_files
from tenantry.observability import exposition, metrics
from tenantry.observability.collectors import PlatformCollector
from tenantry.operations.dispatch import Dispatcher
from tenantry.runtime import Platform, open_dispatcher
from tenantry.settings import Settings, load_settings
from tenantry.version import __version__


@cache
def schema_router(schema_module: str) -> APIRouter:
    """The routes of tenant schema plug-in ``schema_module``'s declared tables, built once per
    process (a router can be included in any number of apps)."""
    return resource_router(resources_of(schema_module))


def create_app(
    settings: Settings | None = None, *, dispatcher: Dispatcher | None = None
) -> FastAPI:
    """The API for ``settings``; the platform opens (and master is checked) at start-up.

    Durable work goes to ``dispatcher``: by default the configured job queue, served by
    ``tenantry worker``; an :class:`~tenantry.operations.dispatch.InProcessDispatcher` runs it
    inside the request instead (an API without workers: tests, demos).
    """
    restrict_new_files()  # the API's files (SQLite's -wal/-shm, tenant databases) are private
    metrics.enable()  # before any engine is made: its queries are timed from the first
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.platform = Platform.open(settings, runtime=True)
        app.state.dispatcher = dispatcher or open_dispatcher(settings)
        app.state.metrics_registry = exposition.scrape_registry(
            PlatformCollector(lambda: app.state.platform, lambda: app.state.dispatcher)
        )
        app.state.ingest = IngestWriter(app.state.platform.billing_engine)
        app.state.usage = UsageWriter(app.state.platform.writer_sessions)
        # What start-up built lives as long as the process: keep it out of the cyclic GC's
        # full collections, whose pauses would otherwise land on some requests' latency.
        gc.freeze()
        try:
            yield
        finally:
            app.state.ingest.close()
            app.state.usage.close()
            app.state.platform.close()
            if dispatcher is None:  # the caller closes the one it gave
                app.state.dispatcher.close()
            exposition.mark_process_dead(os.getpid())

    app = FastAPI(
        title="tenantry",
        version=__version__,
        description="Stores, their databases, provisioning jobs and store data.",
        lifespan=lifespan,
    )
    errors.install(app)
    idempotency.install(app)
    webhook_receiver.install(app)
    # Outside every middleware that may touch a database, so each sees the request's holder.
    app.add_middleware(PrincipalScope)
    # No body over the limit reaches any route or middleware (but the metrics, which read
    # none, count its refusals too).
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    # Added last, so outermost: every answer is counted, whoever gave it.
    app.add_middleware(HttpMetrics)
    app.include_router(stores.router)
    app.include_router(store_domains.router)
    app.include_router(servers.router)
    app.include_router(server_drain.router)
    app.include_router(store_move.router)
    app.include_router(tenant_data.router)
    app.include_router(billing.router)
    app.include_router(webhooks.router)
    app.include_router(backups.router)
    app.include_router(fleet.router)
    app.include_router(imports.router)
    app.include_router(operations.router)
    app.include_router(auth.router)
    app.include_router(apikeys.router)
    app.include_router(audit.router)
    app.include_router(monitoring.router)
    # The tables a tenant schema declares come last: FastAPI builds an app's copy of an
    # included router's routes when a request first walks past them, so every other route is
    # found without building the 60-odd table routes (none of the routers above serves a path
    # these could also match: their paths start elsewhere or are tenantry's own store routes,
    # which were before them already).
    app.include_router(schema_router(settings.tenant_schema))

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the process answers (``/ready`` says whether it can serve)."""
        return {"status": "ok", "version": __version__}

    openapi.document_errors(app)
    # The web console beside the API: its pages at / and /console/…, its own error pages.
    console.install(app)
    return app
