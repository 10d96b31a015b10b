"""The HTTP API's rules for writes, applied to ``app.tenant_session`` / ``tenant_async_session``.

Master is read once, when the session opens (the store row and its subscription, in the same
transaction the session is routed with). From then on the session itself enforces:

* **write blocks**: while a move or restore blocks the store's writes, a flush with changes or
  an ORM insert/update/delete raises :class:`~tenantry.errors.WritesBlocked` (the API's 503
  with Retry-After); reads go on, as they do through the API;
* **plan limits**: new products past ``max_products``, new orders past
  ``max_orders_per_month``, and either while the store is over its storage limit, raise
  :class:`~tenantry.errors.LimitExceeded` before anything is written;
* **usage counters**: after the store's database committed, ``stores.product_count`` and
  ``stores.order_count`` in master are brought up to date, as the API does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from tenantry.db.master.models import Store, Subscription
from tenantry.db.tenant.store.models import Order, Product
from tenantry.db.types import utcnow
from tenantry.errors import LimitExceeded
from tenantry.runtime import Platform
from tenantry.services.store_data import check_storage
from tenantry.services.stores import current_subscription
from tenantry.services.write_blocks import ensure_writable

#: The store's products, counted (master's ``product_count`` is this, kept current).
PRODUCT_COUNT = select(func.count()).select_from(Product)

_UPGRADE_HINT = "Upgrade the store's plan (tenantry stores update SLUG --plan …) or remove some."


def _month_start() -> Any:
    return utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass
class StoreRules:
    """One session's view of its store (read from master when it opened) and what it wrote."""

    store: Store
    subscription: Subscription | None
    products_changed: bool = False
    orders_added: int = 0
    _pending_orders: int = field(default=0, repr=False)
    _pending_products: bool = field(default=False, repr=False)
    _pending_new_products: int = field(default=0, repr=False)

    @classmethod
    def read(cls, master: Session, store: Store, *, writing: bool = False) -> StoreRules:
        """The rules of ``store`` (a row of ``master``, fresh in this transaction);
        ``writing``: refuse at once if its writes are blocked now."""
        if writing:
            ensure_writable(store)
        subscription = current_subscription(master, store)
        # Detached snapshots: the master session closes before the tenant session is used.
        master.expunge(store)
        if subscription is not None:
            master.expunge(subscription)
        return cls(store, subscription)

    def watch(self, session: Session) -> None:
        """Enforce the rules on ``session`` (a sync session, or an async one's
        ``sync_session``)."""
        event.listen(session, "before_flush", self._before_flush)
        event.listen(session, "after_flush", self._after_flush)
        event.listen(session, "after_commit", self._after_commit)
        event.listen(session, "after_rollback", self._after_rollback)
        event.listen(session, "do_orm_execute", self._on_execute)

    # ------------------------------------------------------------------ events

    def _on_execute(self, state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            ensure_writable(self.store)

    def _before_flush(self, session: Session, _ctx: UOWTransaction, _instances: Any) -> None:
        if not (session.new or session.dirty or session.deleted):
            return
        ensure_writable(self.store)
        new_products = sum(isinstance(o, Product) for o in session.new)
        new_orders = sum(isinstance(o, Order) for o in session.new)
        if not (new_products or new_orders):
            return
        check_storage(self.store, self.subscription)
        sub = self.subscription
        if sub is None:
            return
        # Counted on a connection of its own, outside the session's transaction: on SQLite a
        # transaction that reads before it writes fails at once (not waits) when another
        # writer got in first. Rows this transaction flushed already are added back.
        bind = session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        with engine.connect() as conn:
            if new_products and sub.max_products is not None:
                have = int(conn.scalar(PRODUCT_COUNT) or 0) + self._pending_new_products
                self._refuse_past(have, new_products, sub.max_products, "products", sub)
            if new_orders and sub.max_orders_per_month is not None:
                this_month = select(func.count()).select_from(Order)
                this_month = this_month.where(Order.placed_at >= _month_start())
                have = int(conn.scalar(this_month) or 0) + self._pending_orders
                self._refuse_past(have, new_orders, sub.max_orders_per_month, "orders a month", sub)

    @staticmethod
    def _refuse_past(have: int, adding: int, limit: int, what: str, sub: Subscription) -> None:
        if have + adding > limit:
            raise LimitExceeded(
                f"the {sub.plan_name} plan allows {limit} {what}; this store has {have} and "
                f"this session adds {adding}; nothing was written.",
                _UPGRADE_HINT,
            )

    def _after_flush(self, session: Session, _ctx: UOWTransaction) -> None:
        # session.new/deleted still hold what this flush wrote; it counts once committed.
        self._pending_orders += sum(isinstance(o, Order) for o in session.new)
        self._pending_new_products += sum(isinstance(o, Product) for o in session.new)
        if any(isinstance(o, Product) for o in (*session.new, *session.deleted)):
            self._pending_products = True

    def _after_commit(self, _session: Session) -> None:
        self.orders_added += self._pending_orders
        self.products_changed = self.products_changed or self._pending_products
        self._after_rollback(_session)

    def _after_rollback(self, _session: Session) -> None:
        self._pending_orders, self._pending_products = 0, False
        self._pending_new_products = 0

    # ------------------------------------------------------------------ counters

    @property
    def counts_changed(self) -> bool:
        """Whether committed writes changed what master counts for the store."""
        return self.products_changed or self.orders_added > 0

    def record(self, platform: Platform, product_count: int | None) -> None:
        """Bring master's counters up to date after the store's database committed:
        ``product_count`` as counted there now, ``order_count`` by the orders added."""
        if not self.counts_changed:
            return
        values: dict[str, Any] = {}
        if product_count is not None:
            values["product_count"] = product_count
        if self.orders_added:
            values["order_count"] = Store.order_count + self.orders_added
        with platform.writer_sessions.begin() as master:
            master.execute(update(Store).where(Store.id == self.store.id).values(**values))
        self.products_changed, self.orders_added = False, 0
