"""``tenantry jobs``: provisioning jobs: list, show, cancel."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tenantry.cli.common import job_document, open_platform, when
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.db.master.models import ProvisioningStatus, Store
from tenantry.services import provisioning, stores
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(help="Follow and cancel provisioning jobs.", no_args_is_help=True)

JOB_ARGUMENT = typer.Argument(..., help="The job's id, or its start (as `jobs list` shows).")


def _print_job(doc: dict[str, Any]) -> None:
    table = Table(title=f"provisioning job {doc['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("store", "mode", "status", "step", "message"):
        table.add_row(key, escape(str(doc.get(key) or "-")))
    table.add_row("progress", f"{doc['progress']}%")
    table.add_row("tables", f"{doc['tables_created']}/{doc['total_tables']}")
    if doc["error"]:
        table.add_row("error", f"[red]{escape(doc['error'])}[/]")
    table.add_row("attempts", str(doc["attempts"]))
    table.add_row("created", when(doc["created_at"]))
    table.add_row("started", when(doc["started_at"]))
    table.add_row("finished", when(doc["finished_at"]))
    console.print(table)


@app.command("list")
@reports_errors
def list_(
    store: str | None = typer.Option(None, "--store", help="Only this store's jobs (slug or id)."),
    status: ProvisioningStatus | None = typer.Option(None, "--status", help="Only jobs in it."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="At most this many."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List provisioning jobs, newest first."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        rows = provisioning.list_jobs(
            session,
            store=stores.get_store(session, store) if store is not None else None,
            status=status.value if status is not None else None,
            limit=limit,
        )
        docs = [{**job_document(job), "store": slug} for job, slug in rows]
    if json_output:
        emit_json(docs)
        return
    if not docs:
        console.print("no provisioning jobs.")
        return
    table = Table(title="provisioning jobs")
    table.add_column("id", no_wrap=True)
    for col in ("store", "mode", "status", "progress", "step", "created"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(
            d["id"],
            d["store"],
            d["mode"],
            d["status"],
            f"{d['progress']}%",
            d["step"] or "-",
            when(d["created_at"]),
        )
    console.print(table)


def _with_store(doc: dict[str, Any], store: Store | None) -> dict[str, Any]:
    return {**doc, "store": store.slug if store is not None else None}


@app.command()
@reports_errors
def show(job_id: str = JOB_ARGUMENT, json_output: bool = JSON_OPTION) -> None:
    """Show a job: status, step, progress, tables created of total, message and error."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        doc = _with_store(job_document(job), session.get(Store, job.store_id))
    if json_output:
        emit_json(doc)
    else:
        _print_job(doc)


@app.command()
@reports_errors
def cancel(job_id: str = JOB_ARGUMENT, json_output: bool = JSON_OPTION) -> None:
    """Cancel a queued or running job; a running job stops at its next step and removes the
    database it created."""
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        job = provisioning.cancel_job(
            session, provisioning.get_job(session, job_id), actor=cli_actor()
        )
        doc = _with_store(job_document(job), session.get(Store, job.store_id))
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] cancelled job {doc['id']} of store {doc['store']}")
