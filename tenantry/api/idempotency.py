"""Idempotency-Key for every POST under /billing: a retry gets the first response.

Middleware, so it covers every billing POST alike. The key is bound to the request (method,
path, body); the same key with another body is a 409. Responses below 500 are stored and
replayed (with ``Idempotent-Replayed: true``); a 5xx releases the key for a retry.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from tenantry.api.errors import error_body, status_for
from tenantry.errors import TenantryError
from tenantry.runtime import Platform
from tenantry.services.apikeys import Scope, authenticate
from tenantry.services.billing import idempotency, validation


def _app_of(platform: Platform, request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    presented = (
        header.partition(" ")[2]
        if header.lower().startswith("bearer ")
        else (request.headers.get("x-api-key"))
    )
    if not presented:
        return None
    try:
        with platform.sessions() as master:
            key = authenticate(master, presented)
    except TenantryError:
        return None
    if Scope.APP.value in key.scopes and key.app_id:
        return key.app_id
    app = request.headers.get("x-app-id")
    if Scope.ADMIN.value in key.scopes and app:
        try:
            return validation.app_id(app)
        except TenantryError:
            return None
    return None


class IdempotencyMiddleware(BaseHTTPMiddleware):
    """Replays the first response to a billing POST retried with the same key."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        key = request.headers.get("idempotency-key")
        if request.method != "POST" or not key or not request.url.path.startswith("/billing/"):
            return await call_next(request)
        platform: Platform = request.app.state.platform
        app_id = await run_in_threadpool(_app_of, platform, request)
        if app_id is None:
            return await call_next(request)  # the route answers 401/403
        body = await request.body()
        fingerprint = idempotency.request_hash(request.method, request.url.path, body)

        def begin() -> idempotency.Replay | None:
            with platform.billing_sessions() as session:
                return idempotency.begin(session, app_id, key, fingerprint)

        try:
            replay = await run_in_threadpool(begin)
        except TenantryError as exc:
            return JSONResponse(
                error_body(type(exc).__name__, exc.message, exc.hint), status_code=status_for(exc)
            )
        if replay is not None:
            return Response(
                replay.body,
                status_code=replay.status_code,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        response = await call_next(request)
        chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
        content = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)

        def finish() -> None:
            with platform.billing_sessions() as session:
                idempotency.finish(
                    session, app_id, key, response.status_code, content.decode("utf-8", "replace")
                )

        await run_in_threadpool(finish)
        return Response(
            content,
            status_code=response.status_code,
            headers=dict(response.headers),
            media_type=response.media_type,
        )


def install(app: FastAPI) -> None:
    """Add the middleware to ``app``."""
    app.add_middleware(IdempotencyMiddleware)
