"""``tenantry stores``: create, list, show, update, suspend, resume, move and delete stores,
rotate their runtime credentials and show their usage."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from tenantry.cli.common import audit_failures, open_platform, public_config, when
from tenantry.cli.output import (
    JSON_OPTION,
    confirm_or_exit,
    console,
    emit_json,
    reports_errors,
)
from tenantry.cli.store_credentials import rotate_credentials
from tenantry.cli.store_move import move
from tenantry.cli.store_usage import usage
from tenantry.cli.stores_gdpr import erase_customer
from tenantry.db.master.models import DatabaseServer, DatabaseStatus, Store
from tenantry.operations import customer_erase, store_create, store_delete
from tenantry.services import stores
from tenantry.services.audit import cli_actor
from tenantry.services.plans import PLANS
from tenantry.services.usage import human_bytes
from tenantry.settings import load_settings

app = typer.Typer(help="Create, inspect and manage stores (tenants).", no_args_is_help=True)

PLAN_HELP = f"The store's plan: {', '.join(PLANS)}."
SLUG_ARGUMENT = typer.Argument(..., help="The store's slug (or id).")


class LifecycleStatus(StrEnum):
    """Where a store is (``stores.lifecycle_status``)."""

    PENDING = "pending"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    FAILED = "failed"


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


def _status_style(status: str) -> str:
    color = {
        "active": "green",
        "suspended": "yellow",
        "failed": "red",
        "provisioning": "cyan",
    }.get(status, "dim")
    return f"[{color}]{status}[/]"


def _print_store(doc: dict[str, Any]) -> None:
    table = Table(title=f"store {doc['slug']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("id", doc["id"])
    table.add_row("name", doc["name"])
    table.add_row("status", _status_style(doc["status"]))
    table.add_row("database status", doc["database_status"])
    table.add_row("plan", f"{doc['plan']} ({doc['subscription_status']})")
    table.add_row("published", "yes" if doc["is_published"] else "no")
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


@app.command()
@reports_errors
def create(
    slug: str = typer.Argument(..., help="3 to 63 lowercase letters, digits and hyphens."),
    name: str = typer.Option(..., "--name", help="The store's display name."),
    plan: str = typer.Option("free", "--plan", help=PLAN_HELP),
    region: str | None = typer.Option(
        None,
        "--region",
        help="Data residency: its database may only live on servers labelled with this region.",
    ),
    tier: str | None = typer.Option(
        None, "--tier", help="Its database may only live on servers of this tier."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Register a store (not yet provisioned): next, `tenantry provision SLUG`.

    --region/--tier record its data-residency requirement: `provision --new` places it on a
    registered server with those labels, and moves and restores elsewhere are refused.
    """
    with open_platform(load_settings()) as platform:
        with audit_failures(platform, "store.create", "store", slug):
            created = store_create.create(
                platform,
                slug=slug,
                name=name,
                plan=plan,
                region=region,
                tier=tier,
                region_field="--region",
                tier_field="--tier",
                actor=cli_actor(),
            )
        with platform.sessions() as session:
            doc = store_document(session, stores.get_store(session, created.id))
    if json_output:
        emit_json(doc)
        return
    console.print(f"[green]✓[/] created store {slug} ({doc['plan']} plan), id {doc['id']}")
    # --inline works with or without a worker; --wait needs one running.
    typer.echo(
        f"next: tenantry provision {slug} --new --inline "
        "(or --wait while `tenantry worker` or `tenantry up` runs)"
    )


@app.command("list")
@reports_errors
def list_(
    status: LifecycleStatus | None = typer.Option(None, "--status", help="Only stores in it."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="At most this many."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List stores by slug with their status and plan."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        derived = status in (LifecycleStatus.PENDING, LifecycleStatus.PROVISIONING)
        db_status = DatabaseStatus.PROVISIONING if derived else status
        found, total = stores.list_stores(
            session, status=str(db_status) if db_status else None, limit=limit
        )
        items: list[dict[str, Any]] = [
            {
                "id": str(s.id),
                "slug": s.slug,
                "name": s.name,
                "status": stores.lifecycle_status(session, s),
                "database_status": s.database_status,
                "database_type": s.database_type,
                "plan": s.subscription_plan,
                "is_published": s.is_published,
                "created_at": s.created_at,
            }
            for s in found
        ]
    if status is not None and derived:
        items = [i for i in items if i["status"] == status]
        total = len(items)
    if json_output:
        emit_json({"items": items, "total": total})
        return
    if not items:
        console.print("no stores" + (f" with status {status}" if status else "") + ".")
        return
    table = Table(title=f"stores ({len(items)} of {total})")
    for col in ("slug", "name", "status", "plan", "database", "created"):
        table.add_column(col, overflow="fold")
    for i in items:
        table.add_row(
            i["slug"],
            i["name"],
            _status_style(i["status"]),
            i["plan"],
            i["database_type"] or "-",
            when(i["created_at"]),
        )
    console.print(table)


@app.command()
@reports_errors
def show(slug: str = SLUG_ARGUMENT, json_output: bool = JSON_OPTION) -> None:
    """Show one store: status, plan, usage and where its database is (never a password)."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        doc = store_document(session, stores.get_store(session, slug))
    if json_output:
        emit_json(doc)
    else:
        _print_store(doc)


@app.command()
@reports_errors
def update(
    slug: str = SLUG_ARGUMENT,
    name: str | None = typer.Option(None, "--name", help="A new display name."),
    plan: str | None = typer.Option(None, "--plan", help=PLAN_HELP),
    published: bool | None = typer.Option(
        None, "--published/--unpublished", help="Publish or unpublish the store."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Rename a store, change its plan or publish it (the slug never changes)."""
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        store = stores.get_store(session, slug)
        stores.update_store(
            session, store, name=name, plan=plan, is_published=published, actor=cli_actor()
        )
        doc = store_document(session, store)
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] updated store {doc['slug']}")
        _print_store(doc)


@app.command()
@reports_errors
def suspend(
    slug: str = SLUG_ARGUMENT,
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Refuse all of a store's traffic until it is resumed; its data is kept."""
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "store.suspend", "store", slug),
        platform.writer_sessions.begin() as session,
    ):
        store = stores.get_store(session, slug)
        stores.suspend_store(session, store, reason=reason, actor=cli_actor())
        doc = store_document(session, store)
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] store {doc['slug']} is suspended")


@app.command()
@reports_errors
def resume(slug: str = SLUG_ARGUMENT, json_output: bool = JSON_OPTION) -> None:
    """Serve a suspended store again."""
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "store.resume", "store", slug),
        platform.writer_sessions.begin() as session,
    ):
        store = stores.get_store(session, slug)
        stores.resume_store(session, store, actor=cli_actor())
        doc = store_document(session, store)
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] store {doc['slug']} is {doc['status']}")


@app.command()
@reports_errors
def delete(
    slug: str = SLUG_ARGUMENT,
    drop_database: bool = typer.Option(
        False,
        "--drop-database",
        help="Also drop the store's database (only one tenantry created; others are refused).",
    ),
    erase_billing: bool | None = typer.Option(
        None,
        "--erase-billing-customer/--keep-billing-customer",
        help="Also erase the store's platform billing customer (GDPR; invoices are kept). "
        "Asked when interactive; kept otherwise.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Delete a store and what master holds for it; its audit entries stay.

    The store's database is left as it is unless --drop-database is given, and a database
    tenantry did not create (--connect) is never dropped. With --drop-database the sources
    kept after `stores move` are dropped too. The databases are dropped first; the store is
    removed only once that succeeded.
    """
    with open_platform(load_settings()) as platform:
        plan = store_delete.plan(platform, slug, drop_database=drop_database)
        if not yes:
            question = f"Delete store {plan.slug!r}"
            if plan.drop_database:
                question += f" and DROP its database {plan.shown}"
            if plan.doomed:
                question += f" and {len(plan.doomed)} source(s) kept after moves"
            confirm_or_exit(question + "?", json_output, "Pass --yes to delete without asking.")
        billing_customer = customer_erase.billing_customer_of(platform, plan.slug)
        if erase_billing is None and billing_customer is not None:
            erase_billing = (
                not yes
                and sys.stdin.isatty()
                and typer.confirm(
                    "Also erase its billing customer (personal data removed, invoices kept)?",
                    err=True,
                )
            )
        with audit_failures(platform, "store.delete", "store", plan.slug):
            doc = store_delete.delete(platform, plan, actor=cli_actor())
        doc["billing_customer_erased"] = bool(
            erase_billing
            and billing_customer is not None
            and customer_erase.erase_billing_customer(platform, billing_customer, actor=cli_actor())
        )
    if json_output:
        emit_json(doc)
        return
    console.print(f"[green]✓[/] deleted store {plan.slug}")
    if doc["billing_customer_erased"]:
        console.print("[green]✓[/] erased its billing customer (invoices kept)")
    if plan.drop_database:
        done = (
            "dropped its database" if doc["database_dropped"] else "its database was already gone:"
        )
        console.print(f"[green]✓[/] {done} {plan.shown}")
    elif plan.shown is not None:
        console.print(f"its database was left as it is: {plan.shown}")
    for shown_url in doc["kept_sources_dropped"]:
        console.print(f"[green]✓[/] dropped the source kept after a move: {shown_url}")
    for shown_url in doc["kept_sources_left"]:
        console.print(f"a source kept after a move was left as it is: {shown_url}")


# Registered last, so `tenantry stores --help` lists it where it always was.
app.command()(move)
app.command("rotate-credentials")(rotate_credentials)
app.command("erase-customer")(erase_customer)
app.command("usage")(usage)
