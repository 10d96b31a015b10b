"""Processor webhooks: verify, store once, answer 2xx; processing happens in the background.

Served by :mod:`tenantry.api.webhook_receiver` ahead of routing; this route documents the
endpoint (and serves it when the receiver is not installed).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from tenantry.api.webhook_receiver import deliver, signature_header

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/{processor}/{app_id}", responses={400: {}, 401: {}, 404: {}, 413: {}, 503: {}}
)
async def receive(processor: str, app_id: str, request: Request) -> Response:
    """Receive one event for ``app_id`` from ``processor`` (``stripe`` or ``tilled``).

    2xx means the event is committed (a duplicate delivery to the same app is acknowledged
    and does nothing); 401 a bad signature; 400 a signed body the processor's adapter cannot
    read (the error names the field); 404 an unknown processor; 422 an app without an active
    signing secret; 413 a body over 1 MiB.
    Concurrent deliveries share one commit (group commit), each answered once its own row
    is durable.
    """
    header = signature_header(processor)
    signature = request.headers.get(header.decode()) if header else None
    status, answer = await deliver(
        request.app.state, processor, app_id, await request.body(), signature
    )
    return JSONResponse(answer, status_code=status)
