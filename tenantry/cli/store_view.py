"""A store as the CLI shows it: the JSON document (``--json``) and the table for people."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from sqlalchemy.orm import Session

from tenantry.cli.common import public_config, when
from tenantry.cli.output import console
from tenantry.db.master.models import DatabaseServer, Store
from tenantry.services import stores
from tenantry.services.usage import human_bytes


def store_document(session: Session, store: Store) -> dict[str, Any]:
    """Everything master knows about a store that is not a secret."""
    connection = stores.active_connection(session, store)
    job = stores.active_job(session, store)
    subscription = stores.current_subscription(session, store)
    server_name: str | None = None
    if connection is not None and connection.database_server_id is not None:
        server = session.get(DatabaseServer, connection.database_server_id)
        server_name = server.name if server is not None else None
    return {
        "id": str(store.id),
        "slug": store.slug,
        "name": store.name,
        "billing_customer_id": str(store.billing_customer_id)
        if store.billing_customer_id
        else None,
        "status": stores.lifecycle_status(session, store),
        "database_status": store.database_status,
        "database_type": store.database_type,
        "plan": store.subscription_plan,
        "subscription_status": store.subscription_status,
        "subscription": None
        if subscription is None
        else {
            "id": str(subscription.id),
            "plan": subscription.plan_name,
            "status": subscription.status,
            "price_monthly_minor": subscription.price_monthly_minor,
            "max_products": subscription.max_products,
            "max_orders_per_month": subscription.max_orders_per_month,
            "max_storage_gb": subscription.max_storage_gb,
            "max_api_calls_per_month": subscription.max_api_calls_per_month,
        },
        "counts": {
            "products": store.product_count,
            "orders": store.order_count,
            "api_calls_month": store.api_calls_month,
            "storage_used_bytes": store.storage_used_bytes,
        },
        "owner_id": str(store.owner_id) if store.owner_id else None,
        "is_published": store.is_published,
        "connection": None
        if connection is None
        else {
            "id": str(connection.id),
            "engine": connection.integration_type,
            "config_data": public_config(connection.config_data),
            "created_by_tenantry": connection.created_by_tenantry,
            "instance_id": connection.instance_id,
            "server": server_name,
            "access_mode": connection.access_mode,
            "can_ddl": connection.can_ddl,
            "credentials_rotated_at": connection.credentials_rotated_at,
            # The store's schema in a shared database (None: a database of its own).
            "schema": connection.db_schema,
        },
        "active_job_id": str(job.id) if job is not None else None,
        "connection_version": store.connection_version,
        "created_at": store.created_at,
        "updated_at": store.updated_at,
        "suspended_at": store.suspended_at,
        "last_activity_at": store.last_activity_at,
        "storage_measured_at": store.storage_measured_at,
        "residency": {"region": store.residency_region, "tier": store.residency_tier},
    }


def status_style(status: str) -> str:
    """A lifecycle status coloured for the terminal."""
    color = {
        "active": "green",
        "suspended": "yellow",
        "failed": "red",
        "provisioning": "cyan",
    }.get(status, "dim")
    return f"[{color}]{status}[/]"


def print_store(doc: dict[str, Any]) -> None:
    """A store document as a table for people."""
    table = Table(title=f"store {doc['slug']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("id", doc["id"])
    table.add_row("name", doc["name"])
    table.add_row("status", status_style(doc["status"]))
    table.add_row("database status", doc["database_status"])
    table.add_row("plan", f"{doc['plan']} ({doc['subscription_status']})")
    table.add_row("published", "yes" if doc["is_published"] else "no")
    residency = doc["residency"]
    if residency["region"] or residency["tier"]:
        shown = [f"{k} {v}" for k, v in residency.items() if v]
        table.add_row("residency", ", ".join(shown) + " (servers with these labels only)")
    counts = doc["counts"]
    table.add_row(
        "usage",
        f"{counts['products']} products, {counts['orders']} orders, "
        f"{counts['api_calls_month']} API calls this month, "
        + (
            f"{human_bytes(counts['storage_used_bytes'])} stored (`stores usage` for the days)"
            if doc["storage_measured_at"]
            else "storage not measured yet"
        ),
    )
    conn = doc["connection"]
    if conn is None:
        table.add_row("database", "[dim]none yet: `tenantry provision " + doc["slug"] + "`[/]")
    else:
        details = ", ".join(f"{k}={v}" for k, v in conn["config_data"].items() if v is not None)
        table.add_row("database", details)
        if conn["schema"]:
            table.add_row("schema", f"{conn['schema']} (in a database shared with other stores)")
        table.add_row("created by tenantry", "yes" if conn["created_by_tenantry"] else "no")
        if conn["server"]:
            table.add_row("server", conn["server"])
        if conn["access_mode"]:
            rotated = when(conn["credentials_rotated_at"])
            table.add_row("access", f"{conn['access_mode']} (credentials set {rotated})")
    if doc["active_job_id"]:
        table.add_row("provisioning job", doc["active_job_id"])
    table.add_row("created", when(doc["created_at"]))
    if doc["suspended_at"]:
        table.add_row("suspended", when(doc["suspended_at"]))
    console.print(table)
