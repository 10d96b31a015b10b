"""The webhook hot path as plain ASGI: verify, store once, answer.

Processors deliver in bursts and retry whatever is slow, so ``POST /webhooks/{processor}/
{app_id}`` is served here, before FastAPI's routing and dependency solving (which cost more
than verifying and storing the event). The FastAPI route in ``routes/webhooks.py`` documents
the endpoint and calls the same :func:`deliver`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantry.api.errors import error_body, status_for
from tenantry.api.http_metrics import ROUTE_KEY
from tenantry.errors import InvalidInput, MalformedPayload, NotFound, TenantryError, Unauthorized
from tenantry.observability import metrics
from tenantry.observability.metrics import UNKNOWN
from tenantry.services.billing import webhook_intake, webhook_secrets

PATH = re.compile(r"^/webhooks/([^/]+)/([^/]+)/?$")
#: The route template of :data:`PATH`, as the HTTP metrics label it.
ROUTE = "/webhooks/{processor}/{app_id}"
#: Stripe's and Tilled's events are a few KB; anything this big is not one of them.
MAX_BODY_BYTES = 1024 * 1024


async def deliver(
    state: Any, processor: str, app_id: str, body: bytes, signature: str | None
) -> tuple[int, dict[str, object]]:
    """Verify and durably store one delivery; the status and JSON body to answer.

    200 once the event is committed (a duplicate delivery to the same app is acknowledged
    and does nothing), 401 for a bad signature, 400 for a body the adapter cannot read, 404
    for an unknown processor, 422 for an app without a signing secret. Concurrent deliveries
    share one commit (``state.ingest``).
    """
    known = UNKNOWN
    try:
        adapter = webhook_secrets.processor_named(processor)
        known = adapter.name
        secrets = webhook_secrets.cached_secrets(app_id, adapter.name)
        if secrets is None:
            platform = state.platform

            def load() -> list[str]:
                with platform.billing_engine.connect() as conn:
                    return webhook_secrets.app_secrets(conn, platform.box, app_id, adapter.name)

            secrets = await run_in_threadpool(load)
        delivery = webhook_intake.check_delivery(adapter, app_id, body, signature, secrets)
    except TenantryError as exc:
        metrics.webhook_rejected(known, _reason(exc))
        return status_for(exc), error_body(type(exc).__name__, exc.message, exc.hint)
    stored = await state.ingest.store(delivery)
    if not stored.duplicate:  # counted once stored: what was answered 2xx is committed
        metrics.webhook_received(delivery.app_id, delivery.processor, delivery.event_type)
    return 200, {
        "received": True,
        "id": str(stored.id),
        "event_id": stored.event_id,
        "duplicate": stored.duplicate,
    }


def _reason(exc: TenantryError) -> str:
    """Why a delivery was refused, as a label value from a fixed set."""
    if isinstance(exc, Unauthorized):
        return "signature"
    if isinstance(exc, MalformedPayload):
        return "malformed"
    if isinstance(exc, NotFound):
        return "unknown_processor"
    if isinstance(exc, InvalidInput):
        return "unknown_app"  # an invalid app id, or an app without a signing secret
    return "other"


def signature_header(processor: str) -> bytes | None:
    """The lower-case header name carrying ``processor``'s signature (None if unknown)."""
    try:
        return webhook_secrets.processor_named(processor).signature_header.lower().encode("latin-1")
    except TenantryError:
        return None


class WebhookReceiver:
    """Serves webhook deliveries directly; every other request goes on to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        processor, app_id = match.groups()
        scope[ROUTE_KEY] = ROUTE
        header = signature_header(processor)
        signature = next((v.decode("latin-1") for k, v in scope["headers"] if k == header), None)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender gave up: nothing stored, nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                metrics.webhook_rejected(UNKNOWN if header is None else processor, "too_large")
                status, answer = (
                    413,
                    error_body(
                        "PayloadTooLarge",
                        f"the webhook body is larger than {MAX_BODY_BYTES} bytes.",
                        "Processors send events of a few KB; check what is posting here.",
                    ),
                )
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                status, answer = await deliver(
                    scope["app"].state, processor, app_id, b"".join(chunks), signature
                )
                break
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def install(app: Any) -> None:
    """Put the receiver in front of ``app``'s routing."""
    app.add_middleware(WebhookReceiver)
