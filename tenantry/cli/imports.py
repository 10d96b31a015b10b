"""``tenantry import``: bring data that lives outside tenantry into its databases.

``import shared`` moves each store's rows out of a shared database (one database, every table
carrying a store key) into the store's own database, as a mapping file says; ``import
billing`` brings legacy billing tables into the billing database under one app
(:mod:`tenantry.cli.imports_billing`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tenantry.cli.common import open_platform
from tenantry.cli.imports_billing import billing
from tenantry.cli.imports_queued import run_queued
from tenantry.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    print_error,
    reports_errors,
)
from tenantry.cli.waiting import TIMEOUT_HELP
from tenantry.db import copy
from tenantry.db.master.models import ACTIVE_STATUSES
from tenantry.db.urls import mask, parse_url
from tenantry.imports.mapping import load_mapping
from tenantry.imports.pg_copy import COPY_BATCH_ROWS
from tenantry.imports.plan import ImportPlan
from tenantry.operations.import_progress import StoreOutcome
from tenantry.operations.import_shared import SharedImport
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(
    help="Import data from outside tenantry: a shared database into stores, legacy billing tables.",
    no_args_is_help=True,
)


def _plan_tables(plan: ImportPlan) -> None:
    table = Table(title="rows to copy per store", title_justify="left")
    table.add_column("store", overflow="fold")
    table.add_column("source key", justify="right")
    table.add_column("action")
    table.add_column("rows per table", overflow="fold")
    table.add_column("total", justify="right")
    for target in plan.stores:
        action = (
            "skip: imported"
            if target.imported_by
            else "create + provision"
            if target.store_id is None
            else "provision"
            if not target.provisioned
            else "import"
        )
        per_table = " · ".join(f"{name} {target.rows.get(name, 0)}" for name in plan.tables)
        table.add_row(
            escape(target.slug),
            escape(str(target.key)),
            action,
            escape(per_table),
            str(target.total),
        )
    console.print(table)


def _problem_table(plan: ImportPlan) -> None:
    table = Table(title=f"{len(plan.problems)} problem(s)", title_justify="left")
    for column in ("problem", "table", "column", "rows", "example keys", "what is wrong"):
        table.add_column(column, overflow="fold")
    for p in plan.problems:
        table.add_row(
            p.kind,
            escape(p.table or ""),
            escape(p.column or ""),
            str(p.count or ""),
            escape(", ".join(p.examples)),
            escape(p.message + (f" (first: {p.detail})" if p.detail else "")),
        )
    console.print(table)


def _outcome_table(outcomes: list[StoreOutcome]) -> None:
    table = Table(title="stores", title_justify="left")
    for column in ("store", "status", "rows", "bytes", "operation", "note"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        colour = {"succeeded": "green", "skipped": "dim"}.get(o.status, "red")
        note = o.error or ("resumed" if o.resumed else "")
        table.add_row(
            escape(o.slug),
            f"[{colour}]{o.status}[/]",
            str(o.rows),
            str(o.bytes),
            str(o.operation_id or ""),
            escape(note),
        )
    console.print(table)


@app.command()
@reports_errors
def shared(
    url: str = typer.Option(
        ..., "--url", help="The shared database to read (never written), e.g. mysql://…/shop."
    ),
    mapping_file: Path = typer.Option(
        ..., "--map", help="The mapping file (YAML): stores, and for each tenant table its source."
    ),
    stores: list[str] | None = typer.Option(
        None, "--stores", help="Import only these stores (tenantry slugs); repeat for several."
    ),
    create_stores: bool = typer.Option(
        False,
        "--create-stores",
        help="Create (and provision) the stores that do not exist in tenantry yet.",
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        help="With --create-stores: the registered server new store databases go on "
        "(default: placed as `provision --new` places them, SQLite files when no server is "
        "registered; `sqlite` for files).",
    ),
    concurrency: int = typer.Option(
        2, "--concurrency", min=1, max=64, help="Stores imported at once."
    ),
    batch_rows: int | None = typer.Option(
        None,
        "--batch-rows",
        min=1,
        help=f"Rows per batch (one target transaction; default {copy.BATCH_ROWS} row by row, "
        f"{COPY_BATCH_ROWS} where PostgreSQL copies to PostgreSQL with COPY).",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Only print, per store and table, the rows that would be copied and every "
        "problem; write nothing.",
    ),
    queued: bool = typer.Option(
        False,
        "--queue",
        help="Hand each store's import to the workers (`tenantry worker`, on any machine that "
        "reaches the source) instead of running them here; the source URL is kept sealed in "
        "master until the last store ends.",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="With --queue: follow the workers' progress until every store ended."
    ),
    timeout: float | None = typer.Option(None, "--timeout", min=0, help=TIMEOUT_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Import a shared database's rows into each store's own database.

    Reads the source (in one consistent snapshot per store where the engine has one) and never
    writes to it. First every mapped row is checked: rows whose store key matches no store,
    values that do not fit their tenant column, foreign keys pointing to no row or to another
    store's row; any problem stops the import before anything is written (--dry-run lists them
    with example keys). Then each store, in its own resumable operation: its rows copied in
    batches in foreign-key order, verified (counts and checksums against the source, foreign
    keys), and the store marked imported. A store that fails is put back as it was; the others
    carry on. Killed mid-way, run the same command again: it resumes where each store stopped.
    With --queue the workers run the stores instead (a worker that dies is taken over by
    another), and the command ends once they are queued, or with --wait once they all ended.
    """
    mapping = load_mapping(mapping_file)
    source_url = parse_url(url, setting="--url")
    settings = load_settings()
    only = list(stores) if stores else None
    if server and not create_stores:
        print_error("--server goes with --create-stores (where new store databases go).")
        raise typer.Exit(EXIT_CONFIG)
    if wait and not queued:
        print_error("--wait goes with --queue (the import runs here and ends with the command).")
        raise typer.Exit(EXIT_CONFIG)
    with open_platform(settings) as platform:
        job = SharedImport(
            platform,
            source_url,
            mapping,
            cli_actor(),
            concurrency=concurrency,
            server=server,
            batch_rows=batch_rows,
        )
        try:
            if not json_output:
                console.print(f"checking {escape(mask(source_url))} against {mapping_file} …")
            plan = job.plan(only=only, create_stores=create_stores)
            if dry_run or plan.problems:
                _show_plan(plan, json_output, dry_run=dry_run)
                if plan.problems:
                    raise typer.Exit(EXIT_CONFIG)
                return
            if queued:
                outcomes = run_queued(job, plan, wait=wait, timeout=timeout, show=not json_output)
            else:
                outcomes = _run(job, plan, show=not json_output)
        finally:
            job.close()
    pending = [o for o in outcomes if o.status in ACTIVE_STATUSES]
    failed = [o for o in outcomes if o.status not in ("succeeded", "skipped", *ACTIVE_STATUSES)]
    if json_output:
        emit_json(
            {
                "source": mask(source_url),
                "stores": [o.as_dict() for o in outcomes],
                "ok": not failed,
                "pending": len(pending),
            }
        )
    else:
        _outcome_table(outcomes)
        done = [o for o in outcomes if o.status == "succeeded"]
        skipped = len(outcomes) - len(done) - len(failed) - len(pending)
        if failed:
            print_error(f"{len(failed)} of {len(outcomes)} stores failed; the others are in.")
        console.print(
            f"[green]✓[/] {len(done)} stores imported ({sum(o.rows for o in done)} rows)"
            + (f", {skipped} already imported before" if skipped else "")
            + (f", {len(pending)} queued or running on the workers" if pending else "")
        )
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _show_plan(plan: ImportPlan, json_output: bool, *, dry_run: bool) -> None:
    if json_output:
        emit_json({"dry_run": dry_run, **plan.as_dict()})
        return
    _plan_tables(plan)
    if plan.problems:
        _problem_table(plan)
        print_error(
            f"{len(plan.problems)} problem(s) stop the import; nothing was written.",
            "Fix the mapping or the source data, then run it again.",
        )
    else:
        total = sum(s.total for s in plan.stores)
        console.print(f"[green]✓[/] no problems; {total} rows would be copied (dry run).")


def _run(job: SharedImport, plan: ImportPlan, *, show: bool) -> list[StoreOutcome]:
    todo = [s for s in plan.stores if s.imported_by is None]
    total = sum(s.total for s in todo)
    if not show:
        return job.run(plan)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows · {task.fields[mb]:.1f} MB · {task.fields[stores]}"),
        TimeElapsedColumn(),
        console=console,
    )
    state: dict[str, Any] = {"bytes": 0, "ended": 0}
    with progress:
        task = progress.add_task("importing", total=total, mb=0.0, stores=f"0/{len(todo)} stores")

        def rows(slug: str, count: int, size: int) -> None:
            state["bytes"] += size
            progress.update(task, advance=count, mb=state["bytes"] / 1e6)

        def ended(outcome: StoreOutcome) -> None:
            if outcome.status == "skipped":
                return
            state["ended"] += 1
            progress.update(task, stores=f"{state['ended']}/{len(todo)} stores")

        return job.run(plan, on_progress=rows, on_outcome=ended)


app.command()(billing)
