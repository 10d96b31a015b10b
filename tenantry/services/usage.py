"""A store's daily usage (seed 001 ``usage_metrics``): what its database holds and did that
day, what its API callers did, and how much space it takes.

One row per store and UTC day, written by the usage rollup
(:mod:`tenantry.operations.usage_rollup`) from three sources:

- the store's own database, as it is when the rollup runs: products (in all, created before
  the day ended; created that day; changed that day having been created before it), orders
  created that day and the sum of their totals (minor units, whatever the currency), media
  uploaded that day (``media_library.size_bytes``). A row deleted since is not counted: the
  schema keeps no trace of it. A tenant schema plug-in without one of these tables or
  columns leaves its numbers at 0, as :mod:`tenantry.services.counters` does;
- master's ``api_usage_logs``: calls logged that day, and errors among them (any answer of
  400 or more: the caller's requests that did not do what was asked, refusals for the quota
  included), and products deleted that day through the API (a successful ``DELETE`` on a
  product; the store schema keeps no trace of a deleted row);
- the server's own size of the database (:func:`tenantry.db.sizes.database_bytes`), which
  also becomes ``stores.storage_used_bytes``, the number the plan's storage limit is
  checked against.

Writing a day again replaces its numbers (same row, same values when nothing changed).
Functions take sessions and connections; the caller commits.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, case, column, func, inspect, select, table
from sqlalchemy.orm import Session

from tenantry.db.master.models import ApiUsageLog, Store, UsageMetric
from tenantry.db.types import UTCDateTime
from tenantry.errors import InvalidInput
from tenantry.services.stores import current_subscription

#: The most days ``usage_days`` returns (a year, leap day included).
MAX_DAYS = 366
#: Bytes in one of a plan's ``max_storage_gb`` (GiB: what ``df -h`` and the servers call GB).
BYTES_PER_GB = 1024**3


@dataclass(frozen=True)
class TenantDay:
    """One day as the store's own database shows it."""

    total_products: int = 0
    products_created: int = 0
    products_updated: int = 0
    orders_created: int = 0
    orders_total_value_minor: int = 0
    storage_uploaded_bytes: int = 0


@dataclass(frozen=True)
class ApiDay:
    """One day of a store's API calls, from master's log."""

    calls: int = 0
    errors: int = 0
    products_deleted: int = 0


@dataclass(frozen=True)
class UsageDay:
    """A store's usage row for one day, as the CLI and the API show it."""

    date: date
    total_products: int
    products_created: int
    products_updated: int
    products_deleted: int
    orders_created: int
    orders_total_value_minor: int
    storage_total_bytes: int
    storage_uploaded_bytes: int
    storage_deleted_bytes: int
    api_calls: int
    api_errors: int

    @classmethod
    def of(cls, row: UsageMetric) -> UsageDay:
        """The view of a stored row."""
        return cls(
            date=row.metric_date,
            total_products=row.total_products,
            products_created=row.products_created,
            products_updated=row.products_updated,
            products_deleted=row.products_deleted,
            orders_created=row.orders_created,
            orders_total_value_minor=row.orders_total_value_minor,
            storage_total_bytes=row.storage_total_bytes,
            storage_uploaded_bytes=row.storage_uploaded_bytes,
            storage_deleted_bytes=row.storage_deleted_bytes,
            api_calls=row.api_calls,
            api_errors=row.api_errors,
        )

    def document(self) -> dict[str, Any]:
        """The day as JSON-ready values (the date as ``YYYY-MM-DD``)."""
        doc = asdict(self)
        doc["date"] = self.date.isoformat()
        return doc


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC start of ``day`` and of the next."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _columns(conn: Connection) -> dict[str, set[str]]:
    """The tables of the store database and their columns (the ones the rollup reads)."""
    found = inspect(conn)
    names = set(found.get_table_names())
    return {
        name: {str(c["name"]) for c in found.get_columns(name)}
        for name in ("products", "orders", "media_library")
        if name in names
    }


def _count(conn: Connection, name: str, *where: Any) -> int:
    query = select(func.count()).select_from(table(name))
    return int(conn.scalar(query.where(*where)) or 0)


def _when(name: str) -> Any:
    return column(name, UTCDateTime())


def read_tenant_day(conn: Connection, day: date) -> TenantDay:
    """What the store database on ``conn`` shows of ``day`` (see the module)."""
    start, end = day_bounds(day)
    present = _columns(conn)
    numbers: dict[str, int] = {}
    products = present.get("products", set())
    if {"created_at"} <= products:
        created = _when("created_at")
        numbers["total_products"] = _count(conn, "products", created < end)
        numbers["products_created"] = _count(conn, "products", created >= start, created < end)
    if {"created_at", "updated_at"} <= products:
        created, updated = _when("created_at"), _when("updated_at")
        numbers["products_updated"] = _count(
            conn, "products", created < start, updated >= start, updated < end
        )
    if {"created_at", "total_minor"} <= present.get("orders", set()):
        created, total = _when("created_at"), column("total_minor", BigInteger())
        count, value = conn.execute(
            select(func.count(), func.coalesce(func.sum(total), 0))
            .select_from(table("orders", created, total))
            .where(created >= start, created < end)
        ).one()
        numbers["orders_created"] = int(count or 0)
        numbers["orders_total_value_minor"] = int(value or 0)
    if {"created_at", "size_bytes"} <= present.get("media_library", set()):
        created, size = _when("created_at"), column("size_bytes", BigInteger())
        numbers["storage_uploaded_bytes"] = int(
            conn.scalar(
                select(func.coalesce(func.sum(size), 0))
                .select_from(table("media_library", created, size))
                .where(created >= start, created < end)
            )
            or 0
        )
    return TenantDay(**numbers)


def read_api_day(master: Session, store_id: uuid.UUID, day: date) -> ApiDay:
    """``day``'s API calls of the store from ``api_usage_logs`` (see the module)."""
    start, end = day_bounds(day)
    in_day = and_(
        ApiUsageLog.store_id == store_id,
        ApiUsageLog.created_at >= start,
        ApiUsageLog.created_at < end,
    )
    calls, errors = master.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((ApiUsageLog.status_code >= 400, 1), else_=0)), 0),
        ).where(in_day)
    ).one()
    deleted = master.scalar(
        select(func.count()).where(
            in_day,
            ApiUsageLog.method == "DELETE",
            ApiUsageLog.endpoint.like("%/products/%"),
            ApiUsageLog.status_code >= 200,
            ApiUsageLog.status_code < 300,
        )
    )
    return ApiDay(
        calls=int(calls or 0), errors=int(errors or 0), products_deleted=int(deleted or 0)
    )


def record_day(
    master: Session,
    store: Store,
    day: date,
    tenant: TenantDay,
    api: ApiDay,
    storage_bytes: int,
) -> UsageMetric:
    """Write the store's row for ``day`` (created, or replaced in place: a second run with the
    same numbers leaves it as it was). The caller holds the store's usage lock and commits."""
    row = master.scalar(
        select(UsageMetric).where(UsageMetric.store_id == store.id, UsageMetric.metric_date == day)
    )
    if row is None:
        row = UsageMetric(store_id=store.id, metric_date=day)
        master.add(row)
    row.total_products = tenant.total_products
    row.products_created = tenant.products_created
    row.products_updated = tenant.products_updated
    row.products_deleted = api.products_deleted
    row.orders_created = tenant.orders_created
    row.orders_total_value_minor = tenant.orders_total_value_minor
    row.storage_uploaded_bytes = tenant.storage_uploaded_bytes
    row.storage_deleted_bytes = 0  # nothing records what a delete freed
    row.storage_total_bytes = storage_bytes
    row.api_calls = api.calls
    row.api_errors = api.errors
    master.flush()
    return row


def record_storage(store: Store, storage_bytes: int, measured_at: datetime) -> None:
    """Keep the store's last measured size (what the storage limit is checked against)."""
    store.storage_used_bytes = storage_bytes
    store.storage_measured_at = measured_at


def validate_days(days: int) -> int:
    """``days`` if it is 1 to :data:`MAX_DAYS`, else a clear :class:`InvalidInput`."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"days must be a whole number from 1 to {MAX_DAYS}, got {days!r}.",
            "Ask for fewer days (e.g. 30).",
        )
    return days


def usage_days(
    master: Session, store: Store, days: int = 30, *, today: date | None = None
) -> list[UsageDay]:
    """The store's rows of the last ``days`` days (today included), oldest first; a day the
    rollup has not written yet is absent."""
    validate_days(days)
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    rows = master.scalars(
        select(UsageMetric)
        .where(
            UsageMetric.store_id == store.id,
            UsageMetric.metric_date >= first,
            UsageMetric.metric_date <= last,
        )
        .order_by(UsageMetric.metric_date)
    )
    return [UsageDay.of(row) for row in rows]


@dataclass(frozen=True)
class StoreUsage:
    """A store's last measured storage against its plan's limit, and its last days."""

    store: str
    plan: str
    storage_used_bytes: int
    storage_limit_bytes: int | None
    storage_measured_at: datetime | None
    days: list[UsageDay]

    def document(self) -> dict[str, Any]:
        """As JSON-ready values."""
        return {
            "store": self.store,
            "plan": self.plan,
            "storage_used_bytes": self.storage_used_bytes,
            "storage_limit_bytes": self.storage_limit_bytes,
            "storage_measured_at": self.storage_measured_at,
            "days": [d.document() for d in self.days],
        }


def store_usage(
    master: Session, store: Store, days: int = 30, *, today: date | None = None
) -> StoreUsage:
    """What ``tenantry stores usage`` and ``GET /stores/{slug}/usage`` show."""
    found = usage_days(master, store, days, today=today)
    subscription = current_subscription(master, store)
    return StoreUsage(
        store=store.slug,
        plan=subscription.plan_name if subscription else store.subscription_plan,
        storage_used_bytes=store.storage_used_bytes,
        storage_limit_bytes=storage_limit_bytes(subscription.max_storage_gb)
        if subscription
        else None,
        storage_measured_at=store.storage_measured_at,
        days=found,
    )


def storage_limit_bytes(max_storage_gb: int | None) -> int | None:
    """A plan's storage limit in bytes (``None``: unlimited)."""
    return None if max_storage_gb is None else max_storage_gb * BYTES_PER_GB


def human_bytes(n: int) -> str:
    """``n`` bytes for people (``1.5 MiB``)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover (the loop always returns)
