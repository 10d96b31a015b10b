"""``tenantry stores``: create, list, show, update, suspend, resume, move and delete stores,
rotate their runtime credentials, show their usage and manage their custom domains."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from tenantry.cli.common import audit_failures, open_platform, when
from tenantry.cli.output import (
    JSON_OPTION,
    confirm_or_exit,
    console,
    emit_json,
    reports_errors,
)
from tenantry.cli.store_credentials import rotate_credentials
from tenantry.cli.store_domains import app as domains_app
from tenantry.cli.store_move import move
from tenantry.cli.store_moves import app as moves_app
from tenantry.cli.store_usage import usage
from tenantry.cli.store_view import print_store, status_style, store_document
from tenantry.cli.stores_gdpr import erase_customer
from tenantry.operations import customer_erase, store_create, store_delete
from tenantry.services import stores
from tenantry.services.audit import cli_actor
from tenantry.services.plans import PLANS
from tenantry.services.stores import LifecycleStatus
from tenantry.settings import load_settings

app = typer.Typer(help="Create, inspect and manage stores (tenants).", no_args_is_help=True)

PLAN_HELP = f"The store's plan: {', '.join(PLANS)}."
SLUG_ARGUMENT = typer.Argument(..., help="The store's slug (or id).")


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
        found, total = stores.list_stores(session, status=status, limit=limit)
        statuses = stores.lifecycle_statuses(session, found)
        items: list[dict[str, Any]] = [
            {
                "id": str(s.id),
                "slug": s.slug,
                "name": s.name,
                "status": statuses[s.id],
                "database_status": s.database_status,
                "database_type": s.database_type,
                "plan": s.subscription_plan,
                "is_published": s.is_published,
                "created_at": s.created_at,
            }
            for s in found
        ]
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
            status_style(i["status"]),
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
        print_store(doc)


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
        print_store(doc)


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
                question += f" and DROP {plan.what}"
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
        gone = "dropped" if doc["database_dropped"] else "already gone:"
        console.print(f"[green]✓[/] {gone} {plan.what}")
    elif plan.shown is not None:
        console.print(f"left as it is: {plan.what}")
    for shown_url in doc["kept_sources_dropped"]:
        console.print(f"[green]✓[/] dropped the source kept after a move: {shown_url}")
    for shown_url in doc["kept_sources_left"]:
        console.print(f"a source kept after a move was left as it is: {shown_url}")


# Registered last, so `tenantry stores --help` lists it where it always was.
app.command()(move)
app.command("rotate-credentials")(rotate_credentials)
app.command("erase-customer")(erase_customer)
app.command("usage")(usage)
app.add_typer(domains_app, name="domains")
app.add_typer(moves_app, name="moves")
