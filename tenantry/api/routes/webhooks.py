"""Processor webhooks: verify, store once, answer 2xx; processing happens in the background."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tenantry.runtime import Platform
from tenantry.services.billing import webhooks

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/{processor}/{app_id}")
async def receive(processor: str, app_id: str, request: Request) -> Response:
    """Receive one event for ``app_id`` from ``processor`` (``stripe`` or ``tilled``).

    2xx means the event is committed (a duplicate delivery is acknowledged and does
    nothing); 401 a bad signature; 422 a body that is not an event. Concurrent deliveries
    share one commit (group commit), each answered once its own row is durable.
    """
    # The hot path: no dependency injection, no response model; plain bytes out.
    platform: Platform = request.app.state.platform
    body = await request.body()
    adapter = webhooks.processor_named(processor)
    secrets = webhooks.cached_secrets(app_id, adapter.name)
    if secrets is None:

        def load() -> list[str]:
            with platform.billing_engine.connect() as conn:
                return webhooks.app_secrets(conn, platform.box, app_id, adapter.name)

        secrets = await run_in_threadpool(load)
    delivery = webhooks.check_delivery(
        adapter, app_id, body, request.headers.get(adapter.signature_header), secrets
    )
    stored = await asyncio.wrap_future(request.app.state.ingest.submit(delivery))
    answer = {
        "received": True,
        "id": str(stored.id),
        "event_id": stored.event_id,
        "duplicate": stored.duplicate,
    }
    return Response(json.dumps(answer), media_type="application/json")
