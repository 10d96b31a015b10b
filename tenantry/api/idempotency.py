"""Idempotency-Key for every POST under /billing: a retry gets the first response.

Middleware, so it covers every billing POST alike. The key is bound to the request (method,
path, body); the same key with another body is a 409. Responses below 500 are stored and
replayed (with ``Idempotent-Replayed: true``); a 5xx releases the key for a retry. The same
key while its first request still runs is a 409 with ``Retry-After``.

The response to replay is also kept *in the route's own transaction* (:func:`bind` and
:func:`commit`): a process that dies after committing the effect but before the middleware
stored the response leaves a replay behind, never a key that a later retry could take again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.api.errors import error_body, headers_for, status_for
from tenantry.errors import TenantryError
from tenantry.failpoints import failpoint
from tenantry.operations import idempotency as keys
from tenantry.runtime import Platform
from tenantry.services.apikeys import READ_ONLY, authenticate
from tenantry.services.apikeys import Scope as KeyScope
from tenantry.services.billing import idempotency, validation

Out = TypeVar("Out", bound=BaseModel)

#: Where the middleware leaves a request's reservation (in the ASGI scope's state).
_RESERVATION = "idempotency_reservation"


@dataclass
class Reservation:
    """The key a request reserved, and the response its route staged to keep with its effect."""

    app_id: str
    key: str
    response: tuple[int, str] | None = None


def _reservation(request: Request) -> Reservation | None:
    found = request.scope.get("state", {}).get(_RESERVATION)
    return found if isinstance(found, Reservation) else None


def bind(request: Request, session: Session) -> None:
    """Make every commit of ``session`` (a billing session of ``request``) keep the request's
    response with its effect, when the request reserved an Idempotency-Key."""
    reservation = _reservation(request)
    if reservation is None:
        return

    def keep(committing: Session) -> None:
        idempotency.keep_with_effect(
            committing, reservation.app_id, reservation.key, reservation.response
        )

    event.listen(session, "before_commit", keep)


def commit(request: Request, session: Session, out: Out, status_code: int | None = None) -> Out:
    """Commit the route's changes with ``out`` as the response a retry with the same
    Idempotency-Key replays; returns ``out``. ``status_code`` is the one the route answers
    with, when not its declared one."""
    reservation = _reservation(request)
    if reservation is not None:
        route = request.scope.get("route")
        declared = getattr(route, "status_code", None) or 200
        reservation.response = (status_code or declared, out.model_dump_json(by_alias=True))
    session.commit()
    return out


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
    if READ_ONLY in key.scopes:  # its POSTs are refused: nothing to reserve or replay
        return None
    if KeyScope.APP.value in key.scopes and key.app_id:
        return key.app_id
    app = request.headers.get("x-app-id")
    if KeyScope.ADMIN.value in key.scopes and app:
        try:
            return validation.app_id(app)
        except TenantryError:
            return None
    return None


class IdempotencyMiddleware:
    """Replays the first response to a billing POST retried with the same key.

    Pure ASGI: every other request passes straight through at no cost.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith("/billing/")
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = request.headers.get("idempotency-key")
        platform: Platform | None = getattr(scope["app"].state, "platform", None)
        if not key or platform is None:
            await self.app(scope, receive, send)
            return
        app_id = await run_in_threadpool(_app_of, platform, request)
        if app_id is None:
            await self.app(scope, receive, send)  # the route answers 401/403
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        fingerprint = idempotency.request_hash("POST", scope["path"], body)

        def begin() -> idempotency.Replay | None:
            replay = keys.reserve(platform.billing_writer_sessions, app_id, key, fingerprint)
            if replay is None:
                failpoint("idempotency.reserved")  # tests: a first request still in progress
            return replay

        try:
            replay = await run_in_threadpool(begin)
        except TenantryError as exc:
            refused = JSONResponse(
                error_body(type(exc).__name__, exc.message, exc.hint),
                status_code=status_for(exc),
                headers=headers_for(exc),
            )
            await refused(scope, receive, send)
            return
        if replay is not None:
            first = Response(
                replay.body,
                status_code=replay.status_code,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
            await first(scope, receive, send)
            return

        scope.setdefault("state", {})[_RESERVATION] = Reservation(app_id, key)
        sent = False

        async def replay_body() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        finally:
            content = b"".join(out).decode("utf-8", "replace")

            def finish() -> None:
                failpoint("idempotency.finish")  # tests: the process dies before storing
                keys.record(platform.billing_writer_sessions, app_id, key, status, content)

            await run_in_threadpool(finish)


def install(app: FastAPI) -> None:
    """Add the middleware to ``app``."""
    app.add_middleware(IdempotencyMiddleware)
