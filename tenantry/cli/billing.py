"""``tenantry billing``: processor webhooks, their signing secrets, and customers (the secrets
and customers subgroups are :mod:`tenantry.cli.billing_accounts`, registered here).

Webhook events are stored by the API (``POST /webhooks/{processor}/{app_id}``) and applied by
the worker; these commands inspect them, queue them again (``replay``) and, with
``--process``, apply what is due in this process, so they work with no worker running.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import OperationalError

from tenantry.cli.billing_accounts import ACTOR, APP_OPTION, cell, customers_app, secrets_app
from tenantry.cli.common import open_platform, when
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.db.billing.models import (
    BillingWebhook,
    WebhookStatus,
)
from tenantry.errors import InvalidInput
from tenantry.operations import process_webhooks
from tenantry.runtime import Platform
from tenantry.services.billing import webhooks
from tenantry.settings import load_settings

app = typer.Typer(
    help="Billing: processor webhooks, their signing secrets, and customers.",
    no_args_is_help=True,
)
webhooks_app = typer.Typer(
    help="Inspect processor webhook events and apply them again.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(secrets_app, name="secrets")
app.add_typer(customers_app, name="customers")

#: Events claimed per round by ``replay --process``, and the most rounds it runs.
PROCESS_BATCH, PROCESS_MAX_ROUNDS = 50, 1000
#: How often ``replay --process`` tries again when the database is busy, and how long apart.
BUSY_RETRIES, BUSY_PAUSE_S = 10, 0.5


_STATUS_COLORS: dict[str, str] = {
    WebhookStatus.RECEIVED: "cyan",
    WebhookStatus.PROCESSING: "yellow",
    WebhookStatus.PROCESSED: "green",
    WebhookStatus.IGNORED: "dim",
    WebhookStatus.FAILED: "red",
}


def _styled(status: str) -> str:
    color = _STATUS_COLORS.get(status, "default")
    return f"[{color}]{escape(status)}[/]"


# --------------------------------------------------------------------------- documents


def webhook_document(row: BillingWebhook, *, payload: bool = False) -> dict[str, Any]:
    """A stored webhook event as JSON; its raw payload only when ``payload``."""
    doc: dict[str, Any] = {
        "id": str(row.id),
        "app_id": row.app_id,
        "processor": row.processor,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "result": row.result,
        "received_at": row.received_at,
        "processing_started_at": row.processing_started_at,
        "processed_at": row.processed_at,
        "next_attempt_at": row.next_attempt_at,
    }
    if payload:
        doc["payload"] = row.payload
    return doc


# --------------------------------------------------------------------------- webhooks


@webhooks_app.command("list")
@reports_errors
def webhooks_list(
    status: WebhookStatus | None = typer.Option(None, "--status", help="Only events in it."),
    app_id: str | None = APP_OPTION,
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="At most this many."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List webhook events, newest first (never their payloads: see `webhooks show`)."""
    with open_platform(load_settings()) as platform, platform.billing_sessions() as session:
        rows = webhooks.list_webhooks(
            session,
            app_id=app_id,
            status=status.value if status is not None else None,
            limit=limit,
        )
        docs = [webhook_document(row) for row in rows]
    if json_output:
        emit_json({"items": docs})
        return
    if not docs:
        console.print(
            "no webhook events" + (f" with status {status.value}" if status else "") + "."
        )
        return
    table = Table(title=f"webhook events ({len(docs)}, newest first)")
    table.add_column("id", overflow="fold")
    table.add_column("app", overflow="fold")
    table.add_column("processor / event id", overflow="fold")
    table.add_column("type", overflow="fold")
    table.add_column("status", overflow="fold")
    table.add_column("tries", justify="right")
    table.add_column("last error / result", overflow="fold")
    table.add_column("received / processed", overflow="fold")
    for d in docs:
        detail = f"[red]{cell(d['last_error'])}[/]" if d["last_error"] else cell(d["result"])
        table.add_row(
            d["id"],
            cell(d["app_id"]),
            f"{cell(d['processor'])}\n{cell(d['event_id'])}",
            cell(d["event_type"]),
            _styled(d["status"]),
            str(d["attempts"]),
            detail,
            f"{when(d['received_at'])}\n{when(d['processed_at'])}",
        )
    console.print(table)


def _pretty_payload(payload: str) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload


@webhooks_app.command("show")
@reports_errors
def webhooks_show(
    webhook_id: str = typer.Argument(
        ..., help="The event's id (or its start), or the processor's event id."
    ),
    app_id: str | None = typer.Option(None, "--app", help="Only if it is this app's."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show one webhook event, its processing state and its raw payload."""
    with open_platform(load_settings()) as platform, platform.billing_sessions() as session:
        doc = webhook_document(
            webhooks.get_webhook(session, webhook_id, app_id=app_id), payload=True
        )
    if json_output:
        emit_json(doc)
        return
    table = Table(title=f"webhook event {doc['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("processor", cell(doc["processor"]))
    table.add_row("app", cell(doc["app_id"]))
    table.add_row("event id", cell(doc["event_id"]))
    table.add_row("type", cell(doc["event_type"]))
    table.add_row("status", _styled(doc["status"]))
    table.add_row("attempts", str(doc["attempts"]))
    if doc["result"]:
        table.add_row("result", cell(doc["result"]))
    if doc["last_error"]:
        table.add_row("last error", f"[red]{cell(doc['last_error'])}[/]")
    table.add_row("received", when(doc["received_at"]))
    table.add_row("processing started", when(doc["processing_started_at"]))
    table.add_row("processed", when(doc["processed_at"]))
    if doc["next_attempt_at"]:
        table.add_row("next attempt", when(doc["next_attempt_at"]))
    console.print(table)
    console.print("[bold]payload[/]")
    console.print(_pretty_payload(doc["payload"]), markup=False, soft_wrap=True)


def _process_due(platform: Platform) -> tuple[int, bool]:
    """Apply, in this process, every event due now: how many were handled, and whether it
    stopped early because the database stayed busy (SQLite, a worker claiming at once)."""
    handled, busy_rounds = 0, 0
    for _ in range(PROCESS_MAX_ROUNDS):
        try:
            batch = process_webhooks.process_pending(platform.billing_sessions, limit=PROCESS_BATCH)
        except OperationalError:
            # SQLite has no SKIP LOCKED: a claim racing a running worker's is refused
            # ("database is locked") and rolled back, claiming nothing. Try again shortly.
            busy_rounds += 1
            if busy_rounds > BUSY_RETRIES:
                return handled, True
            time.sleep(BUSY_PAUSE_S)
            continue
        handled += batch
        if batch < PROCESS_BATCH:
            break
    return handled, False


@webhooks_app.command("replay")
@reports_errors
def webhooks_replay(
    webhook_id: str | None = typer.Argument(
        None, help="The event's id (or its start), or the processor's event id."
    ),
    failed: bool = typer.Option(False, "--failed", help="Every failed event instead of one."),
    app_id: str | None = typer.Option(None, "--app", help="Only this app's events."),
    process: bool = typer.Option(
        False,
        "--process",
        help="Also apply what is due now, in this process (no worker needed).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Queue an event (or every failed one) to be applied again; nothing is applied twice.

    Without --process a running worker (`tenantry worker` or `tenantry up`) applies them.
    """
    if (webhook_id is None) == (not failed):
        raise InvalidInput("give exactly one of an event ID or --failed.")
    with open_platform(load_settings()) as platform:
        with platform.billing_writer_sessions.begin() as session:
            if webhook_id is not None:
                row = webhooks.get_webhook(session, webhook_id, app_id=app_id)
                webhooks.replay(session, row, actor=ACTOR)
                ids = [row.id]
            else:
                # What webhooks.replay_failed does, keeping the rows to report on them.
                rows = webhooks.list_webhooks(
                    session, app_id=app_id, status=WebhookStatus.FAILED, limit=100_000
                )
                for failed_row in rows:
                    webhooks.replay(session, failed_row, actor=ACTOR)
                ids = [r.id for r in rows]
        doc: dict[str, Any] = {"replayed": len(ids), "ids": [str(i) for i in ids]}
        if process:
            handled, busy = _process_due(platform)
            doc["handled"] = handled
            doc["stopped_busy"] = busy
            doc["events"] = _outcomes(platform, ids)
    if json_output:
        emit_json(doc)
        return
    console.print(f"[green]✓[/] queued {doc['replayed']} event(s) to be applied again")
    if not process:
        if ids:
            console.print("[dim]a running worker applies them; or run with --process.[/]")
        return
    console.print(f"processed {doc['handled']} due event(s) in this process")
    if doc["stopped_busy"]:
        console.print(
            "[yellow]stopped early: the billing database stayed busy (is a worker running?); "
            "the worker applies the rest.[/]"
        )
    if doc["events"]:
        table = Table(title="replayed events")
        table.add_column("id", overflow="fold")
        for col in ("event id", "status", "tries", "last error / result"):
            table.add_column(col, overflow="fold")
        for e in doc["events"]:
            detail = f"[red]{cell(e['last_error'])}[/]" if e["last_error"] else cell(e["result"])
            table.add_row(
                e["id"], cell(e["event_id"]), _styled(e["status"]), str(e["attempts"]), detail
            )
        console.print(table)


def _outcomes(platform: Platform, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The state of each of ``ids`` now, in the order given."""
    with platform.billing_sessions() as session:
        found = {
            row.id: row
            for row in (session.get(BillingWebhook, webhook_id) for webhook_id in ids)
            if row is not None
        }
        return [webhook_document(found[i]) for i in ids if i in found]
