"""``Depends(app.current_tenant_session)`` (and ``current_tenant_async_session``): a session
on the store the tenant middleware resolved for the request, committed after the route,
rolled back if it raised. A write (not GET/HEAD/OPTIONS) to a store whose writes are blocked
is a 503 with Retry-After before the route runs; a plan limit hit by a flush in the route is
a 403 (one hit by the commit after the route comes too late for the response: flush in the
route to get it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from tenantry.errors import LimitExceeded, TenantryError, WritesBlocked
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


#: Methods that change nothing: served while a store's writes are blocked, as by the API.
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def http_error(exc: TenantryError) -> HTTPException:
    """``exc`` as the HTTP error the API answers it with (Retry-After on a 503)."""
    refusal = refusal_of(exc)
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
    return HTTPException(refusal.status, detail=refusal.body()["error"], headers=headers)


def tenant_session_dependency(app: Tenantry) -> Callable[[Request], Iterator[Session]]:
    """The dependency that yields ``app``'s session on the request's store."""

    def current_tenant_session(request: Request) -> Iterator[Session]:
        resolved = current_store(request)
        try:
            opened = app.tenant_session(resolved.id, writing=request.method not in READS)
            session = opened.__enter__()
        except TenantryError as exc:  # suspended since it was resolved, say
            raise http_error(exc) from None
        try:
            try:
                yield session
            except BaseException as exc:
                if not opened.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                opened.__exit__(None, None, None)
        except (WritesBlocked, LimitExceeded) as exc:  # from the route's flush or the commit
            raise http_error(exc) from None

    return current_tenant_session


def tenant_async_session_dependency(
    app: Tenantry,
) -> Callable[[Request], AsyncIterator[AsyncSession]]:
    """The dependency that yields ``app``'s async session on the request's store."""

    async def current_tenant_async_session(request: Request) -> AsyncIterator[AsyncSession]:
        resolved = current_store(request)
        opened = app.tenant_async_session(resolved.id, writing=request.method not in READS)
        try:
            session = await opened.__aenter__()
        except TenantryError as exc:
            raise http_error(exc) from None
        try:
            try:
                yield session
            except BaseException as exc:
                if not await opened.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                await opened.__aexit__(None, None, None)
        except (WritesBlocked, LimitExceeded) as exc:
            raise http_error(exc) from None

    return current_tenant_async_session
