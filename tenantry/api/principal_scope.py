"""A holder for each request's principal, opened before anything of the request runs.

``current_key`` fills it once the caller is known. It must exist before the dependencies run:
FastAPI runs sync dependencies and routes in worker threads with *copies* of the request's
context, so a principal set inside one of them would not be seen by the next. Every copy
shares this one holder, so the service layer's read-only guard sees the principal wherever the
request's code runs.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tenantry.services import permissions


class PrincipalScope:
    """Pure ASGI middleware: one principal holder per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = permissions.begin_request()
        try:
            await self.app(scope, receive, send)
        finally:
            permissions.end_request(token)
