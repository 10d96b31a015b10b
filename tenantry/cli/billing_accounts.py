"""``tenantry billing secrets`` and ``tenantry billing customers``: each app's webhook signing
secrets (values never shown) and its billing customers."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import JSON_OPTION, MAX_OFFSET, console, emit_json, reports_errors
from tenantry.db.billing.models import BillingCustomer, BillingProcessorSecret
from tenantry.services.audit import cli_actor
from tenantry.services.billing import customers, webhook_secrets
from tenantry.settings import load_settings

secrets_app = typer.Typer(
    help="Webhook signing secrets per app and processor (values are never shown).",
    no_args_is_help=True,
)
customers_app = typer.Typer(help="Each app's billing customers.", no_args_is_help=True)

#: Who the billing audit log records for changes made here.
ACTOR = cli_actor()
APP_OPTION = typer.Option(None, "--app", help="Only this app's (app id).")


class ProcessorName(StrEnum):
    """The payment processors tenantry has adapters for."""

    STRIPE = "stripe"
    TILLED = "tilled"


def cell(value: object) -> str:
    """A table cell: the value with Rich markup escaped (billing data comes from outside)."""
    return "-" if value is None or value == "" else escape(str(value))


def secret_document(row: BillingProcessorSecret) -> dict[str, Any]:
    """A signing secret as JSON: its id and last four characters, never its value."""
    return {
        "id": str(row.id),
        "app_id": row.app_id,
        "processor": row.processor,
        "hint": row.hint,
        "active": row.retired_at is None,
        "created_at": row.created_at,
        "retired_at": row.retired_at,
    }


def customer_document(row: BillingCustomer) -> dict[str, Any]:
    """A billing customer as JSON."""
    return {
        "id": str(row.id),
        "app_id": row.app_id,
        "external_customer_id": row.external_customer_id,
        "email": row.email,
        "name": row.name,
        "processor": row.processor,
        "processor_customer_id": row.processor_customer_id,
        "metadata": row.metadata_,
        "erased_at": row.erased_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


# --------------------------------------------------------------------------- secrets


@secrets_app.command("add")
@reports_errors
def secrets_add(
    app_id: str = typer.Argument(..., help="The app whose endpoint the secret signs for."),
    processor: ProcessorName = typer.Option(..., "--processor", help="Who signs the events."),
    secret: str = typer.Option(
        ...,
        "--secret",
        prompt="signing secret",
        hide_input=True,
        help="The endpoint's signing secret (asked for, unechoed, when not given).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Add a webhook signing secret (stored encrypted; several may be active at once)."""
    with (
        open_platform(load_settings()) as platform,
        platform.billing_writer_sessions.begin() as session,
    ):
        row = webhook_secrets.add_secret(
            session, platform.box, app_id, processor.value, secret, actor=ACTOR
        )
        doc = secret_document(row)
    if json_output:
        emit_json(doc)
        return
    console.print(
        f"[green]✓[/] added {doc['processor']} signing secret …{cell(doc['hint'])} "
        f"for app {cell(doc['app_id'])}, id {doc['id']}"
    )


@secrets_app.command("list")
@reports_errors
def secrets_list(app_id: str | None = APP_OPTION, json_output: bool = JSON_OPTION) -> None:
    """List signing secrets, newest first: id, app, processor and last four characters."""
    with open_platform(load_settings()) as platform, platform.billing_sessions() as session:
        docs = [secret_document(row) for row in webhook_secrets.list_secrets(session, app_id)]
    if json_output:
        emit_json({"items": docs})
        return
    if not docs:
        console.print("no signing secrets: `tenantry billing secrets add APP_ID …`.")
        return
    table = Table(title="webhook signing secrets")
    table.add_column("id", overflow="fold")
    for col in ("app", "processor", "hint", "status", "created", "retired"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(
            d["id"],
            cell(d["app_id"]),
            cell(d["processor"]),
            "…" + cell(d["hint"]),
            "[green]active[/]" if d["active"] else "[dim]retired[/]",
            when(d["created_at"]),
            when(d["retired_at"]),
        )
    console.print(table)


@secrets_app.command("retire")
@reports_errors
def secrets_retire(
    secret_id: str = typer.Argument(..., help="The secret's id (`billing secrets list`)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Stop accepting signatures made with a secret (running APIs within a few seconds)."""
    with (
        open_platform(load_settings()) as platform,
        platform.billing_writer_sessions.begin() as session,
    ):
        doc = secret_document(webhook_secrets.retire_secret(session, secret_id, actor=ACTOR))
    if json_output:
        emit_json(doc)
        return
    console.print(
        f"[green]✓[/] retired {doc['processor']} signing secret …{cell(doc['hint'])} "
        f"of app {cell(doc['app_id'])}"
    )


# --------------------------------------------------------------------------- customers


@customers_app.command("list")
@reports_errors
def customers_list(
    app_id: str = typer.Argument(..., help="The app whose customers to list."),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="At most this many."),
    offset: int = typer.Option(0, "--offset", min=0, max=MAX_OFFSET, help="Skip this many first."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List an app's billing customers, oldest first."""
    with open_platform(load_settings()) as platform, platform.billing_sessions() as session:
        rows, total = customers.list_customers(session, app_id, limit=limit, offset=offset)
        docs = [customer_document(row) for row in rows]
    if json_output:
        emit_json({"items": docs, "total": total, "limit": limit, "offset": offset})
        return
    if not docs:
        console.print(f"no customers of app {cell(app_id)}" + (" here." if total else "."))
        return
    table = Table(
        title=f"customers of {cell(app_id)} ({offset + 1}-{offset + len(docs)} of {total})"
    )
    table.add_column("id", overflow="fold")
    for col in ("external id", "email", "name", "processor id", "created", "erased"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(
            d["id"],
            cell(d["external_customer_id"]),
            cell(d["email"]),
            cell(d["name"]),
            cell(d["processor_customer_id"]),
            when(d["created_at"]),
            when(d["erased_at"]),
        )
    console.print(table)
