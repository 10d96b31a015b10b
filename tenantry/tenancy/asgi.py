"""A framework-neutral ASGI middleware that resolves each request's store.

    web = TenantMiddleware(asgi_app, resolver)        # or web.add_middleware(TenantMiddleware,
                                                      #   resolver=resolver) in Starlette/FastAPI

The resolved :class:`~tenantry.tenancy.resolver.ResolvedStore` is put in
``scope["state"]["tenantry_store"]`` (``request.state.tenantry_store`` in Starlette); a path
prefix it consumed is appended to ``root_path``, ``path`` staying the full path as uvicorn
gives it (Starlette, FastAPI and Django route on ``path`` less ``root_path``). Requests it
cannot resolve are answered here, in JSON, and never reach the app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tenantry.errors import TenantryError
from tenantry.tenancy.resolver import STATE_KEY, Refusal, TenantResolver, refusal_of
from tenantry.tenancy.strategies import RequestFacts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TenantMiddleware:
    """Resolves the store of every HTTP and WebSocket request before ``app`` sees it."""

    def __init__(
        self, app: ASGIApp, resolver: TenantResolver, *, exempt: tuple[str, ...] = ()
    ) -> None:
        """``exempt``: path prefixes served without a store (health checks, say)."""
        self.app = app
        self.resolver = resolver
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or route_path(scope).startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        facts = _facts(scope)
        try:
            # The master look-up is a blocking call: off the event loop.
            resolved = await asyncio.to_thread(self.resolver.resolve, facts)
        except TenantryError as exc:
            await _refuse(scope, send, refusal_of(exc))
            return
        scope = dict(scope)
        scope["state"] = {**scope.get("state", {}), STATE_KEY: resolved}
        if resolved.prefix:
            root = scope.get("root_path", "") + resolved.prefix
            scope["root_path"] = root
            scope["path"] = root + resolved.path
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` less the ``root_path`` it is mounted at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _facts(scope: Scope) -> RequestFacts:
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    return RequestFacts(headers.get("host"), route_path(scope), headers)


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.message[:120]})
        return
    body = json.dumps(refusal.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
