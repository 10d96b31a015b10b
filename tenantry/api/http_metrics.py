"""Counting every HTTP request by method, route template and status, with its latency.

Plain ASGI, outermost: it sees every answer, including those of middleware that answer
before routing (the webhook receiver, the body limit). The route label is the template the
router matched (``/stores/{slug}``), never the path, so the series stay bounded whatever
clients send; a request no route matched is :data:`~tenantry.observability.metrics.UNMATCHED`.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.observability import metrics

#: Methods counted by name; any other (a client's invention) is counted as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Set on the scope by middleware that serves a route itself, before the router runs.
ROUTE_KEY = "tenantry.route"


def route_of(scope: Scope) -> str:
    """The template of the route that served ``scope`` (after the request ran)."""
    served = scope.get(ROUTE_KEY)
    if isinstance(served, str):
        return served
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else metrics.UNMATCHED


class HttpMetrics:
    """Observes ``tenantry_http_requests_total`` and ``…_duration_seconds`` per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.http_request(method, route_of(scope), status, time.perf_counter() - started)
