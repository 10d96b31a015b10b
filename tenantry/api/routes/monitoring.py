"""``GET /metrics`` (Prometheus) and ``GET /ready`` (readiness)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tenantry.api.deps import DispatcherDep, KeyDep, PlatformDep
from tenantry.api.openapi import raises
from tenantry.errors import Forbidden
from tenantry.observability import exposition, readiness
from tenantry.services.permissions import Principal

router = APIRouter(tags=["monitoring"])


@raises(403)
def platform_reader(key: KeyDep) -> Principal:
    """Platform-wide keys (read-only ones too) and signed-in users: metrics name the largest
    tenants and every app's numbers, which a store's or an app's key may not read."""
    if not key.is_admin:
        raise Forbidden(
            "metrics need a platform key (admin, or read-only admin) or a signed-in user.",
            "Create one for Prometheus: tenantry apikeys create --admin --read-only.",
        )
    return key


ReaderDep = Annotated[Principal, Depends(platform_reader)]


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {exposition.CONTENT_TYPE: {}}, "description": "Metrics."}},
)
async def metrics(request: Request, _reader: ReaderDep) -> Response:
    """The platform's metrics in Prometheus's text format: in-process counters of every
    API process and the worker (multiprocess mode under ``tenantry up``), and what master,
    billing and the queue hold now. Needs a platform API key (a read-only admin key is
    enough; Prometheus sends it as ``Authorization: Bearer``) or a signed-in user."""
    body = await run_in_threadpool(exposition.render, request.app.state.metrics_registry)
    return Response(body, media_type=exposition.CONTENT_TYPE)


@router.get("/ready", responses={503: {"description": "A part does not answer."}})
def ready(platform: PlatformDep, dispatcher: DispatcherDep) -> JSONResponse:
    """Readiness: 200 when master, billing and the job queue answer, else 503 naming the
    part that does not and what to do. No key needed (as ``/health``); never shows URLs."""
    checks = readiness.readiness(platform, dispatcher)
    ok = all(c.ok for c in checks)
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": {c.name: c.as_dict() for c in checks}},
        status_code=200 if ok else 503,
    )
