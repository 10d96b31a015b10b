"""``tenantry import billing``: legacy billing tables into the billing database under an app
(registered on the ``import`` group by :mod:`tenantry.cli.imports`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenantry.cli.common import open_platform
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    err_console,
    print_error,
    reports_errors,
)
from tenantry.db.urls import mask, parse_url
from tenantry.imports.billing.convert import Problem
from tenantry.imports.billing.mapping import load_mapping
from tenantry.imports.billing.plan import Scanned
from tenantry.operations.import_billing import (
    ImportRefused,
    Progressed,
    check,
    run_import,
)
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

_STEPS = {"checking": "checking rows", "importing": "importing rows", "verifying": "verifying"}


def _progress(json_output: bool) -> tuple[Progress, Any]:
    bar = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_output,
        transient=False,
    )
    return bar, bar.add_task("starting", total=None)


def _print_tables(scanned: Scanned, *, dry_run: bool) -> None:
    table = Table(title="legacy tables" + (" (dry run: nothing written)" if dry_run else ""))
    for column in ("table", "into", "rows", "to import" if dry_run else "written", "already"):
        table.add_column(column)
    table.add_column("totals (minor units)", overflow="fold")
    for t in scanned.tables:
        totals = ", ".join(f"{c} {v}" for c, v in sorted(t.totals.items())) or "-"
        table.add_row(
            escape(t.source),
            t.into.value,
            str(t.rows),
            str(t.new if dry_run else t.written),
            str(t.present),
            totals,
        )
    console.print(table)


def _print_problems(problems: list[Problem]) -> None:
    table = Table(title=f"{len(problems)} problem(s): nothing can be imported until fixed")
    for column in ("table", "column", "problem", "rows", "example keys"):
        table.add_column(column, overflow="fold")
    for p in problems:
        table.add_row(
            escape(p.table),
            escape(p.column or "-"),
            escape(p.problem),
            str(p.rows) if p.rows else "-",
            escape(", ".join(p.examples)) or "-",
        )
    err_console.print(table)


@reports_errors
def billing(
    url: str = typer.Option(..., "--url", help="The legacy database (SQLite, PostgreSQL, MySQL)."),
    map_file: Path = typer.Option(
        ..., "--map", help="The mapping file (YAML; format in the README)."
    ),
    app_id: str = typer.Option(..., "--app", help="The billing app the rows are imported under."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Check everything and print the plan and the problems; write nothing.",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Import legacy billing tables (customers, subscriptions, invoices, payments, webhooks)
    into the billing database under an app.

    The whole source is checked first: bad mappings and dirty data (missing columns, bad
    currencies, negative amounts, unknown customers, duplicate ids) are reported with the
    table, column and example keys, and nothing is written while any is left. Rows are then
    imported in batches and verified (rows and amount totals per currency, source against
    billing). Idempotent on the legacy ids: run it again, or after it was interrupted, and
    each row is still imported once. The source is only read. Exits 1 when a problem is
    found or verification finds a difference; --dry-run writes nothing at all.
    """
    source = parse_url(url, setting="--url")
    mapping = load_mapping(map_file)
    with open_platform(load_settings()) as platform:
        bar, task = _progress(json_output)

        def show(state: Progressed) -> None:
            if not bar.live.is_started:
                bar.start()
            bar.update(
                task,
                description=_STEPS.get(state.step, state.step),
                completed=state.current,
                total=state.total,
            )

        try:
            if dry_run:
                scanned = check(platform, source, mapping, app_id, on_progress=show)
            else:
                try:
                    imported = run_import(
                        platform, source, mapping, app_id, actor=cli_actor(), on_progress=show
                    )
                except ImportRefused as refused:
                    bar.stop()
                    if not json_output:
                        _print_problems(refused.problems)
                    raise
        finally:
            bar.stop()
    if dry_run:
        problems = scanned.problems.all()
        if json_output:
            emit_json(
                {
                    "dry_run": True,
                    "app": app_id,
                    "source": mask(source),
                    "ok": not problems,
                    "tables": [t.document() for t in scanned.tables],
                    "problems": [p.document() for p in problems],
                }
            )
        else:
            _print_tables(scanned, dry_run=True)
            if problems:
                _print_problems(problems)
            else:
                console.print("[green]✓[/] no problems: the import can run.")
        if problems:
            raise typer.Exit(EXIT_FAILED)
        return
    doc = {"app": app_id, "source": mask(source), **imported.document()}
    if json_output:
        emit_json(doc)
    else:
        _print_tables(imported.scanned, dry_run=False)
        if imported.verification.ok:
            console.print(
                f"[green]✓[/] verified: rows and totals per currency match "
                f"(operation {imported.operation_id})."
            )
        else:
            for line in imported.verification.differences():
                print_error(line, label="difference:")
    if not imported.verification.ok:
        raise typer.Exit(EXIT_FAILED)
