"""``Depends(app.current_tenant_session)`` (and ``current_tenant_async_session``): a session
on the store the tenant middleware resolved for the request, committed after the route,
rolled back if it raised."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from tenantry.errors import TenantryError
from tenantry.tenancy.resolver import STATE_KEY, ResolvedStore, refusal_of

if TYPE_CHECKING:
    from tenantry.public.tenantry import Tenantry


def current_store(request: Request) -> ResolvedStore:
    """The store :class:`~tenantry.tenancy.asgi.TenantMiddleware` resolved (a dependency
    too: ``Depends(current_store)``)."""
    resolved = request.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(resolved, ResolvedStore):
        raise RuntimeError(
            "no tenant was resolved for this request: add the middleware, "
            "web.add_middleware(TenantMiddleware, resolver=app.resolver(...))."
        )
    return resolved


def tenant_session_dependency(app: Tenantry) -> Callable[[Request], Iterator[Session]]:
    """The dependency that yields ``app``'s session on the request's store."""

    def current_tenant_session(request: Request) -> Iterator[Session]:
        resolved = current_store(request)
        try:
            opened = app.tenant_session(resolved.id)
            session = opened.__enter__()
        except TenantryError as exc:  # suspended since it was resolved, say
            refusal = refusal_of(exc)
            raise HTTPException(refusal.status, detail=refusal.body()["error"]) from None
        try:
            yield session
        except BaseException as exc:
            if not opened.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            opened.__exit__(None, None, None)

    return current_tenant_session


def tenant_async_session_dependency(
    app: Tenantry,
) -> Callable[[Request], AsyncIterator[AsyncSession]]:
    """The dependency that yields ``app``'s async session on the request's store."""

    async def current_tenant_async_session(request: Request) -> AsyncIterator[AsyncSession]:
        resolved = current_store(request)
        opened = app.tenant_async_session(resolved.id)
        try:
            session = await opened.__aenter__()
        except TenantryError as exc:
            refusal = refusal_of(exc)
            raise HTTPException(refusal.status, detail=refusal.body()["error"]) from None
        try:
            yield session
        except BaseException as exc:
            if not await opened.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await opened.__aexit__(None, None, None)

    return current_tenant_async_session
