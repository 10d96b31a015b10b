"""``GET /metrics`` (Prometheus) and ``GET /ready`` (readiness)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tenantry.api.deps import DispatcherDep, KeyDep, PlatformDep
from tenantry.api.openapi import raises
from tenantry.errors import DatabaseUnreachable, Forbidden
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


class Ready(BaseModel):
    """Every part answered."""

    status: str = Field(examples=["ready"])
    checks: dict[str, dict[str, bool]] = Field(
        examples=[{"master": {"ok": True}, "billing": {"ok": True}, "queue": {"ok": True}}]
    )


@router.get("/ready", response_model=Ready)
@raises(503)
def ready(platform: PlatformDep, dispatcher: DispatcherDep) -> Ready:
    """Readiness: 200 when master, billing and the job queue answer; else 503 (the error
    names each part that does not, and what to do). No key needed, as for ``/health``
    (liveness); never shows a URL."""
    checks = readiness.readiness(platform, dispatcher)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise DatabaseUnreachable(
            "not ready: " + "; ".join(f"{c.name}: {c.error}" for c in failed),
            " ".join(dict.fromkeys(c.hint for c in failed if c.hint)) or None,
        )
    return Ready(status="ready", checks={c.name: {"ok": True} for c in checks})
