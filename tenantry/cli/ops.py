"""``tenantry ops``: every durable operation (provisioning, fleet runs, backups, moves…) in one
place: list, show, wait for, cancel."""

from __future__ import annotations

import time
import uuid
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    MAX_OFFSET,
    console,
    emit_json,
    print_error,
    reports_errors,
)
from tenantry.cli.waiting import DEFAULT_TIMEOUT_S, TIMEOUT_HELP, WorkerWatch
from tenantry.db.master.models import (
    FINISHED_STATUSES,
    OperationKind,
    OperationStatus,
)
from tenantry.errors import NotFound, TenantryError
from tenantry.operations import records
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(
    help="List, follow and cancel operations of every kind (provisioning, fleet runs, backups…).",
    no_args_is_help=True,
)

OPERATION_ARGUMENT = typer.Argument(
    ..., help="The operation's id, or its start (as `ops list` shows)."
)
POLL_SECONDS = 0.2


def _store_id(session: Session, ref: str) -> uuid.UUID:
    """A store's id from its slug or id; a deleted store's id still finds its history."""
    try:
        return stores.get_store(session, ref).id
    except NotFound:
        try:
            return uuid.UUID(ref)
        except ValueError:
            raise NotFound(
                f"no store {ref!r}.", "Give a store's slug, or the id of a deleted one."
            ) from None


def _progress_text(progress: dict[str, Any]) -> str:
    """``3/10 tables``, ``3 rows`` or ``-``."""
    current, total, unit = progress["current"], progress["total"], progress["unit"]
    if total is None and not current:
        return "-"
    counted = f"{current}/{total}" if total is not None else str(current)
    return f"{counted} {unit}" if unit else counted


@app.command("list")
@reports_errors
def list_(
    kind: OperationKind | None = typer.Option(None, "--kind", help="Only operations of it."),
    status: OperationStatus | None = typer.Option(None, "--status", help="Only those in it."),
    store: str | None = typer.Option(None, "--store", help="Only this store's (slug or id)."),
    parent: str | None = typer.Option(
        None, "--parent", help="Only the children of this operation (a drain's moves)."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="At most this many."),
    offset: int = typer.Option(0, "--offset", min=0, max=MAX_OFFSET, help="Skip this many."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List operations, newest first."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        found, total = records.list_operations(
            session,
            kind=kind,
            status=status,
            store_id=_store_id(session, store) if store is not None else None,
            parent_id=records.get_operation(session, parent).id if parent is not None else None,
            limit=limit,
            offset=offset,
        )
        docs = [records.operation_document(op) for op in found]
    if json_output:
        emit_json({"items": docs, "total": total})
        return
    if not docs:
        console.print("no operations.")
        return
    table = Table(title=f"operations ({len(docs)} of {total})")
    table.add_column("id", no_wrap=True)
    for column in ("kind", "target", "status", "step", "progress", "created"):
        table.add_column(column, overflow="fold")
    for d in docs:
        table.add_row(
            d["id"][:8],  # enough to name it: every command takes the start of an id
            d["kind"],
            escape(d["target"] or "-"),
            f"{d['status']} (stalled)" if d["stalled"] else d["status"],
            escape(d["progress"]["step"] or "-"),
            _progress_text(d["progress"]),
            when(d["created_at"]),
        )
    console.print(table)


def _print(doc: dict[str, Any]) -> None:
    table = Table(title=f"{doc['kind']} operation {doc['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("target", "status", "store_id", "parent_id", "requested_by"):
        table.add_row(key, escape(str(doc[key] or "-")))
    progress = doc["progress"]
    table.add_row("step", escape(progress["step"] or "-"))
    table.add_row("progress", _progress_text(progress))
    table.add_row("message", escape(progress["message"] or "-"))
    if doc["error"]:
        table.add_row("error", f"[red]{escape(doc['error'])}[/]")
    table.add_row("attempts", str(doc["attempts"]))
    if doc["status"] not in FINISHED_STATUSES and doc["lease_holder"]:
        table.add_row("held by", f"{doc['lease_holder']} until {when(doc['lease_expires_at'])}")
    if doc["stalled"]:
        table.add_row("stalled", f"[yellow]{records.STALLED_NOTE}[/]")
    table.add_row("cancel asked", when(doc["cancel_requested_at"]))
    table.add_row("created", when(doc["created_at"]))
    table.add_row("started", when(doc["started_at"]))
    table.add_row("finished", when(doc["finished_at"]))
    console.print(table)


@app.command()
@reports_errors
def show(operation_id: str = OPERATION_ARGUMENT, json_output: bool = JSON_OPTION) -> None:
    """Show an operation: status, step, progress, message, error, who runs it."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        doc = records.operation_document(records.get_operation(session, operation_id))
    if json_output:
        emit_json(doc)
    else:
        _print(doc)


def _read(platform: Platform, operation_id: uuid.UUID) -> dict[str, Any]:
    with platform.sessions() as session:
        return records.operation_document(records.get_operation(session, operation_id))


def _follow(
    platform: Platform, operation_id: uuid.UUID, *, timeout: float, patient: bool, show: bool
) -> dict[str, Any] | None:
    """Poll the operation (a fresh session each time) until it is over, drawing its progress;
    None when the wait timed out first."""
    watch = WorkerWatch(platform.sessions, what="the operation", patient=patient)
    deadline = time.monotonic() + timeout
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counted]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )
    with bar:
        task = bar.add_task("queued", total=None, counted="")
        while True:
            doc = _read(platform, operation_id)
            progress = doc["progress"]
            step = progress["step"] or doc["status"]
            bar.update(
                task,
                description=escape(
                    f"{step}: {progress['message']}" if progress["message"] else step
                ),
                completed=progress["current"],
                total=progress["total"],
                counted=_progress_text(progress),
            )
            if doc["status"] in FINISHED_STATUSES:
                return doc
            if doc["status"] == OperationStatus.QUEUED:
                watch.check()  # nobody may ever take it: say so instead of waiting silently
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SECONDS)


@app.command()
@reports_errors
def wait(
    operation_id: str = OPERATION_ARGUMENT,
    timeout: float | None = typer.Option(None, "--timeout", min=0, help=TIMEOUT_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Wait for an operation to end, showing its progress; exit 0 if it succeeded, 1 if it
    failed or was cancelled (or the wait timed out)."""
    with open_platform(load_settings()) as platform:
        with platform.sessions() as session:
            op_id = records.get_operation(session, operation_id).id
        doc = _follow(
            platform,
            op_id,
            timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
            patient=timeout is not None,
            show=not json_output,
        )
        if doc is None:
            doc = _read(platform, op_id)
            raise TenantryError(
                f"operation {op_id} is still {doc['status']} after the timeout.",
                f"Follow it with `tenantry ops wait {op_id}` or `tenantry ops show {op_id}`.",
            )
    if json_output:
        emit_json(doc)
    elif doc["status"] == OperationStatus.SUCCEEDED:
        console.print(f"[green]✓[/] {doc['kind']} {escape(doc['target'] or doc['id'])} succeeded")
    else:
        print_error(f"{doc['kind']} {doc['target'] or doc['id']} {doc['status']}.")
        if doc["error"]:
            print_error(doc["error"], label="")
    if doc["status"] != OperationStatus.SUCCEEDED:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@reports_errors
def cancel(operation_id: str = OPERATION_ARGUMENT, json_output: bool = JSON_OPTION) -> None:
    """Cancel a queued or running operation; a running one stops at its next step boundary
    and leaves nothing half-done (follow it with `ops wait`)."""
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        operation = records.get_operation(session, operation_id)
        records.request_cancel(session, operation, actor=cli_actor())
        doc = records.operation_document(operation)
    if json_output:
        emit_json(doc)
    elif doc["status"] == OperationStatus.CANCELLED:
        console.print(f"[green]✓[/] cancelled {doc['kind']} operation {doc['id']}")
    else:
        console.print(
            f"[yellow]cancelling[/] {doc['kind']} operation {doc['id']}: it stops at its next "
            f"step. Follow it with `tenantry ops wait {doc['id']}`."
        )
