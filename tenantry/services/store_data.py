"""A store's own data through its own database: products and orders (the store schema).

Functions take the tenant session (routed to the store's database) and, where plan limits or
usage counters are involved, the master session; the caller commits both.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantry.db.master.models import ApiUsageLog, Store, Subscription
from tenantry.db.tenant.store.models import Order, OrderItem, Price, Product
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, LimitExceeded, NotFound, QuotaExceeded
from tenantry.services.stores import current_subscription
from tenantry.services.usage import human_bytes, storage_limit_bytes

#: The largest amount a money column (BIGINT) holds.
MAX_MONEY_MINOR = 2**63 - 1


@dataclass(frozen=True)
class ProductInput:
    """Fields of a product as the API and CLI accept them."""

    sku: str
    name: str
    slug: str | None = None
    description: str | None = None
    status: str = "active"
    price_minor: int | None = None
    currency: str = "USD"


#: Which of a product's default prices is its price: the newest (the id breaks a tie, so a
#: page and a single product always agree).
_NEWEST_FIRST = (Price.created_at.desc(), Price.id.desc())


def _price_of(tenant: Session, product_id: uuid.UUID, currency: str | None = None) -> Price | None:
    query = select(Price).where(Price.product_id == product_id, Price.price_list == "default")
    if currency:
        query = query.where(Price.currency == currency)
    return tenant.scalar(query.order_by(*_NEWEST_FIRST).limit(1))


def default_prices(tenant: Session, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, Price]:
    """The default price (the newest, any currency) of each of ``product_ids`` that has one,
    in one query: a page of products costs two statements, not one more per product."""
    if not product_ids:
        return {}
    newest: dict[uuid.UUID, Price] = {}
    for price in tenant.scalars(
        select(Price)
        .where(Price.product_id.in_(product_ids), Price.price_list == "default")
        .order_by(*_NEWEST_FIRST)
    ):
        newest.setdefault(price.product_id, price)
    return newest


def product_view(tenant: Session, product: Product) -> dict[str, Any]:
    """A product with its default price, as the API shows it."""
    return product_views(tenant, [product])[0]


def product_views(tenant: Session, products: list[Product]) -> list[dict[str, Any]]:
    """Products with their default prices, as the API shows them (in ``products``' order)."""
    prices = default_prices(tenant, [p.id for p in products])
    return [_view(product, prices.get(product.id)) for product in products]


def _view(product: Product, price: Price | None) -> dict[str, Any]:
    return {
        "id": product.id,
        "sku": product.sku,
        "slug": product.slug,
        "name": product.name,
        "description": product.description,
        "status": product.status,
        "price_minor": price.amount_minor if price else None,
        "currency": price.currency if price else None,
        "created_at": product.created_at,
        "updated_at": product.updated_at,
    }


def list_products(tenant: Session, *, limit: int = 50, offset: int = 0) -> list[Product]:
    """A page of products, newest first."""
    return list(
        tenant.scalars(
            select(Product)
            .order_by(Product.created_at.desc(), Product.id)
            .limit(limit)
            .offset(offset)
        )
    )


def get_product(tenant: Session, product_id: uuid.UUID) -> Product:
    """One product of the store."""
    product = tenant.get(Product, product_id)
    if product is None:
        raise NotFound(f"no product {product_id} in this store.")
    return product


def check_limit(current: int, limit: int | None, what: str, plan: str) -> None:
    """Refuse adding one more of ``what`` when ``current`` already reaches the plan's
    ``limit`` (``None``: unlimited)."""
    if limit is not None and current >= limit:
        raise LimitExceeded(
            f"the {plan} plan allows {limit} {what}; this store has {current}.",
            "Upgrade the store's plan (tenantry stores update SLUG --plan …) or remove some.",
        )


def check_storage(store: Store, subscription: Subscription | None) -> None:
    """Refuse a write that adds data when the store's last measured size
    (``storage_used_bytes``, see :mod:`tenantry.services.usage`) is at or over its plan's
    storage limit; reads and deletes are never refused for it."""
    if subscription is None:
        return
    limit = storage_limit_bytes(subscription.max_storage_gb)
    if limit is None or store.storage_used_bytes < limit:
        return
    measured = store.storage_measured_at
    when = f" (measured {measured:%Y-%m-%d %H:%M} UTC)" if measured else ""
    raise LimitExceeded(
        f"the {subscription.plan_name} plan allows {subscription.max_storage_gb} GB of "
        f"storage; this store uses {human_bytes(store.storage_used_bytes)}{when}.",
        "Upgrade the store's plan (tenantry stores update SLUG --plan …) or delete data; "
        "the use is measured again within the hour, or now with "
        "`tenantry stores usage SLUG --refresh`.",
    )


def create_product(tenant: Session, master: Session, store: Store, data: ProductInput) -> Product:
    """Add a product within the plan's product and storage limits; keeps
    ``stores.product_count`` current."""
    subscription = current_subscription(master, store)
    check_storage(store, subscription)
    count = int(tenant.scalar(select(func.count()).select_from(Product)) or 0)
    if subscription is not None:
        check_limit(count, subscription.max_products, "products", subscription.plan_name)
    slug = data.slug or data.sku.lower().replace(" ", "-")
    if tenant.scalar(select(Product.id).where((Product.sku == data.sku) | (Product.slug == slug))):
        raise Conflict(f"a product with sku {data.sku!r} or slug {slug!r} exists already.")
    product = Product(
        sku=data.sku, slug=slug, name=data.name, description=data.description, status=data.status
    )
    tenant.add(product)
    tenant.flush()
    if data.price_minor is not None:
        tenant.add(
            Price(product_id=product.id, amount_minor=data.price_minor, currency=data.currency)
        )
    store.product_count = count + 1
    return product


def update_product(tenant: Session, product: Product, changes: dict[str, Any]) -> Product:
    """Change a product's fields (and its default price)."""
    for field in ("name", "description", "status", "slug"):
        if changes.get(field) is not None:
            setattr(product, field, changes[field])
    if changes.get("price_minor") is not None:
        price = _price_of(tenant, product.id)
        if price is None:
            tenant.add(
                Price(
                    product_id=product.id,
                    amount_minor=changes["price_minor"],
                    currency=changes.get("currency") or "USD",
                )
            )
        else:
            price.amount_minor = changes["price_minor"]
    product.updated_at = utcnow()
    try:
        tenant.flush()
    except IntegrityError:
        raise Conflict("another product has that slug.") from None
    return product


def delete_product(tenant: Session, master: Session, store: Store, product: Product) -> None:
    """Remove a product (its prices go with it; past order lines keep their copy)."""
    tenant.delete(product)
    tenant.flush()
    store.product_count = int(tenant.scalar(select(func.count()).select_from(Product)) or 0)


@dataclass(frozen=True)
class OrderLine:
    """One requested line of an order."""

    product_id: uuid.UUID
    quantity: int


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def create_order(
    tenant: Session,
    master: Session,
    store: Store,
    *,
    email: str,
    lines: list[OrderLine],
    currency: str = "USD",
) -> Order:
    """Place an order priced from the products' default prices, within the monthly order
    limit and the storage limit."""
    if not lines:
        raise InvalidInput("an order needs at least one line.")
    if any(line.quantity < 1 for line in lines):
        raise InvalidInput("every order line needs a quantity of at least 1.")
    now = utcnow()
    subscription = current_subscription(master, store)
    check_storage(store, subscription)
    if subscription is not None and subscription.max_orders_per_month is not None:
        this_month = int(
            tenant.scalar(
                select(func.count()).select_from(Order).where(Order.placed_at >= _month_start(now))
            )
            or 0
        )
        check_limit(
            this_month, subscription.max_orders_per_month, "orders a month", subscription.plan_name
        )
    items: list[OrderItem] = []
    for line in lines:
        product = tenant.get(Product, line.product_id)
        if product is None:
            raise NotFound(f"order line names unknown product {line.product_id}.")
        price = _price_of(tenant, product.id, currency)
        if price is None:
            raise Conflict(
                f"product {product.sku!r} has no {currency} price.",
                "Give the product a price in that currency, or order in its currency.",
            )
        items.append(
            OrderItem(
                product_id=product.id,
                sku=product.sku,
                name=product.name,
                quantity=line.quantity,
                unit_price_minor=price.amount_minor,
                total_minor=price.amount_minor * line.quantity,
            )
        )
    subtotal = sum(i.total_minor for i in items)
    if subtotal > MAX_MONEY_MINOR:
        # Each line fits, their sum may not: a BIGINT overflow would lose the connection.
        raise InvalidInput(
            f"the order total ({subtotal} minor units) exceeds {MAX_MONEY_MINOR}.",
            "Split the order, or lower its quantities.",
        )
    number = f"{now:%Y%m%d}-{uuid.uuid4().hex[:8].upper()}"
    order = Order(
        order_number=number,
        email=email,
        currency=currency,
        subtotal_minor=subtotal,
        total_minor=subtotal,
        placed_at=now,
    )
    order.items = items
    tenant.add(order)
    tenant.flush()
    # Added in SQL, not from the value read when the request began: two orders placed at once
    # each count (a read-modify-write would let one overwrite the other's).
    master.execute(
        update(Store).where(Store.id == store.id).values(order_count=Store.order_count + 1)
    )
    return order


def order_view(order: Order) -> dict[str, Any]:
    """An order with its lines, as the API shows it."""
    return {
        "id": order.id,
        "order_number": order.order_number,
        "status": order.status,
        "email": order.email,
        "currency": order.currency,
        "subtotal_minor": order.subtotal_minor,
        "total_minor": order.total_minor,
        "placed_at": order.placed_at,
        "items": [
            {
                "product_id": i.product_id,
                "sku": i.sku,
                "name": i.name,
                "quantity": i.quantity,
                "unit_price_minor": i.unit_price_minor,
                "total_minor": i.total_minor,
            }
            for i in order.items
        ],
    }


def get_order(tenant: Session, order_id: uuid.UUID) -> Order:
    """One order of the store."""
    order = tenant.get(Order, order_id)
    if order is None:
        raise NotFound(f"no order {order_id} in this store.")
    return order


def list_orders(tenant: Session, *, limit: int = 50, offset: int = 0) -> list[Order]:
    """A page of orders, newest first."""
    return list(
        tenant.scalars(
            select(Order).order_by(Order.placed_at.desc(), Order.id).limit(limit).offset(offset)
        )
    )


@dataclass(frozen=True)
class ApiCall:
    """One tenant API call as logged in ``api_usage_logs``; ``counted`` calls also count in
    the store's month (a call the platform refused, quota used up, is logged only)."""

    store_id: uuid.UUID
    endpoint: str
    method: str
    status_code: int
    response_time_ms: int
    ip_address: str | None
    user_agent: str | None
    error: str | None = None
    counted: bool = True
    at: datetime = dataclasses.field(default_factory=utcnow)


def count_api_call(
    master: Session,
    store_id: uuid.UUID,
    *,
    endpoint: str,
    method: str,
    status_code: int,
    response_time_ms: int,
    ip_address: str | None,
    user_agent: str | None,
    error: str | None = None,
    counted: bool = True,
) -> None:
    """Log one tenant API call and, when ``counted``, count it in the store's month (reset
    when a month turns); see :func:`count_api_calls`."""
    count_api_calls(
        master,
        [
            ApiCall(
                store_id,
                endpoint,
                method,
                status_code,
                response_time_ms,
                ip_address,
                user_agent,
                error,
                counted,
            )
        ],
    )


def count_api_calls(master: Session, calls: list[ApiCall]) -> None:
    """Log ``calls`` and count the counted ones in their stores' months, exactly as one
    :func:`count_api_call` after another would (in the order of their times): one INSERT for
    all and one UPDATE per store and month.

    Writes only, nothing read first: on SQLite a transaction that starts with a write waits
    for the lock instead of failing. The stores are updated before their log rows are
    inserted, in a fixed order: an insert first would take a shared lock on its store's row
    (InnoDB's foreign-key check) that the update must then upgrade, a deadlock with a request
    updating the same store (MySQL/MariaDB rolled one of them back).
    """
    if not calls:
        return
    ordered = sorted(calls, key=lambda c: c.at)
    # Per store and month, in time order: how many, and the last one's time. A month that
    # turned inside the batch starts the new month's count from the calls after it.
    months: dict[tuple[uuid.UUID, datetime], list[Any]] = {}
    for c in ordered:
        if c.counted:
            group = months.setdefault((c.store_id, _month_start(c.at)), [0, c.at])
            group[0] += 1
            group[1] = c.at
    for (store_id, month), (n, last) in sorted(months.items()):
        master.execute(
            update(Store)
            .where(Store.id == store_id)
            .values(
                api_calls_month=case(
                    (Store.last_activity_at < month, n),
                    (Store.last_activity_at.is_(None), n),
                    else_=Store.api_calls_month + n,
                ),
                last_activity_at=last,
            )
            .execution_options(synchronize_session=False)
        )
    master.execute(
        insert(ApiUsageLog),
        [
            {
                "id": uuid.uuid4(),
                "store_id": c.store_id,
                "endpoint": c.endpoint[:255],
                "method": c.method[:10],
                "status_code": c.status_code,
                "response_time_ms": c.response_time_ms,
                "ip_address": c.ip_address,
                "user_agent": c.user_agent,
                "error_message": c.error,
                "created_at": c.at,
            }
            for c in ordered
        ],
    )


def check_api_quota(master: Session, store: Store) -> None:
    """Refuse a call past the plan's monthly API calls."""
    subscription = current_subscription(master, store)
    if subscription is None or subscription.max_api_calls_per_month is None:
        return
    now = datetime.now(UTC)
    last = store.last_activity_at
    month = _month_start(now)
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    used = store.api_calls_month if last and last >= month else 0
    limit = subscription.max_api_calls_per_month
    if used >= limit:
        next_month = (month + timedelta(days=32)).replace(day=1)
        raise QuotaExceeded(
            f"the {subscription.plan_name} plan allows {limit} API calls a month; this store "
            f"has used {used}.",
            "Retry after the number of seconds in the Retry-After header (when the month "
            "turns), or upgrade the store's plan (tenantry stores update SLUG --plan …).",
            retry_after=max(1, int((next_month - now).total_seconds())),
        )
