"""One size limit on every request body: 413 with the error body, before anything is parsed.

Pure ASGI, outermost, so it covers every route alike (webhooks included): a declared
``Content-Length`` over the limit is refused without reading a byte; a body streamed without
one is counted as it arrives and refused as soon as it passes the limit.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.api.errors import PayloadTooLarge, error_body

#: The default limit (``TENANTRY_API_MAX_BODY_BYTES``).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def too_large_body(limit: int) -> bytes:
    """The JSON error body of a 413."""
    exc = PayloadTooLarge(limit)
    return json.dumps(error_body("PayloadTooLarge", str(exc.detail), exc.hint)).encode()


class BodyLimit:
    """Refuses request bodies larger than ``max_bytes`` with a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        payload = too_large_body(self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False  # the server rejects a malformed length itself
            if too_big:
                await self._refuse(send)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge:
            if not started:
                await self._refuse(send)
