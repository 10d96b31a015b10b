"""A store's own data (products, orders), routed to the store's own database.

Every call is checked against the store's monthly API quota, logged in ``api_usage_logs`` and
counted in ``stores.api_calls_month``. A key scoped to another store gets 404.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from tenantry.api.deps import READ_METHODS, KeyDep, MasterDep, PlatformDep, visible_store
from tenantry.api.errors import status_of
from tenantry.api.fields import Offset
from tenantry.api.openapi import raises
from tenantry.api.schemas import (
    OrderCreate,
    OrderOut,
    ProductCreate,
    ProductOut,
    ProductUpdate,
)
from tenantry.api.usage_writer import UsageWriter
from tenantry.db.master.models import Store
from tenantry.db.sqlite_writers import is_lock_timeout
from tenantry.db.statement_timeout import is_statement_timeout
from tenantry.db.tenant.store.models import Product
from tenantry.db.write_fence import refused_by_fence
from tenantry.errors import DatabaseUnreachable, TenantryError, WritesBlocked
from tenantry.failpoints import failpoint
from tenantry.services import store_data
from tenantry.services.write_blocks import ensure_writable

log = logging.getLogger("tenantry.api")
router = APIRouter(prefix="/stores/{store_ref}", tags=["store data"])
#: Retry-After of a write refused by a move's write fence (the move's block is set by then).
FENCED_RETRY_AFTER_S = 5


@dataclass
class TenantCall:
    """The store a request is for, with sessions on master and on the store's database."""

    master: Session
    store: Store
    tenant: Session
    #: ``store.slug`` read while master was sound: after a failed master commit the row is
    #: expired and cannot be loaded again to name the store in the log.
    store_slug: str

    def commit(self) -> None:
        """Commit the store's database, then master's counters.

        Once the store's database committed, the change is the store's: a master that fails
        after that does not fail the request (its answer would say nothing changed, and a
        retry would write it twice). Only the counters are then behind; they are logged
        (WARNING) and counted again from the store's database by its next usage rollup."""
        self.tenant.commit()
        failpoint("tenant_call.before_master_commit")
        try:
            self.master.commit()
        except SQLAlchemyError as exc:
            with contextlib.suppress(SQLAlchemyError):  # its connection may be gone
                self.master.rollback()
            log.warning(
                "store %s: the change was saved in its database, but master's counters were "
                "not updated (%s); the next usage rollup counts them again",
                self.store_slug,
                type(exc).__name__,
            )


@raises(403, 404, 409, 429, 503)
def tenant_call(
    store_ref: str, request: Request, master: MasterDep, key: KeyDep, platform: PlatformDep
) -> Iterator[TenantCall]:
    """Resolve, authorise and route the request; log and count it afterwards.

    Writes to a store whose database is being moved or restored are refused (503 with
    Retry-After) before anything is routed; reads keep being served from its database. A
    write that passed that check just before a move's block and that the move's write fence
    then refused (PostgreSQL, the source read-only) is the same 503, nothing changed. A
    store database that cannot be reached is a 503 with Retry-After that names no host. The
    log records the status the client gets (:func:`status_of`, as the error handlers do); a
    call refused for the quota is logged but not counted against it.
    """
    store = visible_store(master, key, store_ref)
    store_id, slug = store.id, store.slug
    started = time.perf_counter()
    route = request.scope.get("route")
    code, error = getattr(route, "status_code", None) or 200, None
    try:
        write = request.method not in READ_METHODS
        if write:
            ensure_writable(store)
        store_data.check_api_quota(master, store)
        with platform.router.session(master, store, write=write) as tenant:
            yield TenantCall(master, store, tenant, slug)
    except (DatabaseUnreachable, InterfaceError, OperationalError) as exc:
        if is_lock_timeout(exc):
            code, error = status_of(exc), "database busy"
            raise
        if is_statement_timeout(exc):  # the server answered: not unreachable, too slow
            code, error = status_of(exc), "statement timeout"
            raise
        code = 503
        error = "store database unreachable"
        raise DatabaseUnreachable(
            f"store {slug!r}'s database cannot be reached right now; nothing was changed.",
            "Retry after the number of seconds in the Retry-After header; if it persists, "
            "the platform operator should check the store's database server.",
        ) from None
    except BaseException as exc:
        if refused_by_fence(exc):  # a write that raced a move's block, refused by its fence
            code, error = 503, "writes paused"
            raise WritesBlocked(
                f"store {slug!r} accepts no writes for now: its database is being moved; "
                "reads still work. Nothing was changed.",
                "Retry after the number of seconds in the Retry-After header.",
                retry_after=FENCED_RETRY_AFTER_S,
            ) from None
        code = status_of(exc)
        error = exc.message if isinstance(exc, TenantryError) else type(exc).__name__
        raise
    finally:
        # A successful call committed; a failed one's master changes are dropped. The call
        # is then logged and counted with the calls of other requests at the same moment, in
        # one transaction of their own (see usage_writer), before this request is answered.
        if master.in_transaction():
            master.rollback()
        usage: UsageWriter = request.app.state.usage
        usage.record(
            store_data.ApiCall(
                store_id,
                endpoint=request.url.path,
                method=request.method,
                status_code=code,
                response_time_ms=int((time.perf_counter() - started) * 1000),
                ip_address=request.client.host if request.client else None,
                user_agent=(request.headers.get("user-agent") or "")[:512] or None,
                error=error,
                counted=code != 429 and code < 500,
            )
        )


Call = Annotated[TenantCall, Depends(tenant_call)]


def _product_out(call: TenantCall, product: Product) -> ProductOut:
    return ProductOut.model_validate(store_data.product_view(call.tenant, product))


@router.get("/products", response_model=list[ProductOut])
def list_products(
    call: Call, offset: Offset = 0, limit: int = Query(50, ge=1, le=500)
) -> list[ProductOut]:
    """The store's products, newest first."""
    products = store_data.list_products(call.tenant, limit=limit, offset=offset)
    return [ProductOut.model_validate(v) for v in store_data.product_views(call.tenant, products)]


@router.post("/products", status_code=status.HTTP_201_CREATED, response_model=ProductOut)
def create_product(body: ProductCreate, call: Call) -> ProductOut:
    """Add a product (refused past the plan's product limit)."""
    product = store_data.create_product(
        call.tenant, call.master, call.store, store_data.ProductInput(**body.model_dump())
    )
    out = _product_out(call, product)
    call.commit()
    return out


@router.get("/products/{product_id}", response_model=ProductOut)
def get_product(product_id: uuid.UUID, call: Call) -> ProductOut:
    """One product."""
    return _product_out(call, store_data.get_product(call.tenant, product_id))


@router.patch("/products/{product_id}", response_model=ProductOut)
def update_product(product_id: uuid.UUID, body: ProductUpdate, call: Call) -> ProductOut:
    """Change a product."""
    product = store_data.update_product(
        call.tenant,
        store_data.get_product(call.tenant, product_id),
        body.model_dump(exclude_unset=True),
    )
    out = _product_out(call, product)
    call.commit()
    return out


@router.delete("/products/{product_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_product(product_id: uuid.UUID, call: Call) -> Response:
    """Remove a product."""
    store_data.delete_product(
        call.tenant, call.master, call.store, store_data.get_product(call.tenant, product_id)
    )
    call.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=OrderOut)
def create_order(body: OrderCreate, call: Call) -> OrderOut:
    """Place an order (priced from the products' default prices)."""
    order = store_data.create_order(
        call.tenant,
        call.master,
        call.store,
        email=body.email,
        currency=body.currency,
        lines=[store_data.OrderLine(i.product_id, i.quantity) for i in body.items],
    )
    out = OrderOut.model_validate(store_data.order_view(order))
    call.commit()
    return out


@router.get("/orders", response_model=list[OrderOut])
def list_orders(
    call: Call, offset: Offset = 0, limit: int = Query(50, ge=1, le=500)
) -> list[OrderOut]:
    """The store's orders, newest first."""
    return [
        OrderOut.model_validate(store_data.order_view(o))
        for o in store_data.list_orders(call.tenant, limit=limit, offset=offset)
    ]


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: uuid.UUID, call: Call) -> OrderOut:
    """One order with its lines."""
    return OrderOut.model_validate(
        store_data.order_view(store_data.get_order(call.tenant, order_id))
    )
