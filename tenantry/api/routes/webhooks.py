"""Processor webhooks: verify, store once, answer 2xx; processing happens in the background."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from tenantry.api.deps import PlatformDep
from tenantry.services.billing import webhooks

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/{processor}/{app_id}")
async def receive(
    processor: str, app_id: str, request: Request, platform: PlatformDep
) -> dict[str, object]:
    """Receive one event for ``app_id`` from ``processor`` (``stripe`` or ``tilled``).

    2xx means the event is stored durably (a duplicate delivery is acknowledged and does
    nothing); 401 a bad signature; 400/422 a body that is not an event.
    """
    body = await request.body()
    adapter = webhooks.processor_named(processor)
    signature = request.headers.get(adapter.signature_header)

    def store() -> webhooks.Ingested:
        with platform.billing_engine.connect() as session:
            return webhooks.ingest(
                session,
                platform.box,
                processor=processor,
                app_id=app_id,
                body=body,
                signature=signature,
            )

    stored = await run_in_threadpool(store)
    return {
        "received": True,
        "id": str(stored.id),
        "event_id": stored.event_id,
        "duplicate": stored.duplicate,
    }
