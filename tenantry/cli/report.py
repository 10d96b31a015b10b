"""``tenantry report``: reports over every database (seed 004's weekly size report)."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, err_console, reports_errors
from tenantry.services.size_report import DatabaseSizes, Target, size_report, tenant_targets
from tenantry.services.usage import human_bytes
from tenantry.settings import load_settings

app = typer.Typer(
    help="Reports over every database: sizes per database and per table.",
    no_args_is_help=True,
)

#: Tables listed per database in the table view unless --top says otherwise.
DEFAULT_TOP = 10


@app.command()
@reports_errors
def sizes(
    top: int | None = typer.Option(
        None,
        "--top",
        min=1,
        max=10_000,
        help=f"List this many of each database's largest tables (tables: {DEFAULT_TOP}; "
        "--json: all).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Size of every database (master, billing, each store's) and of its tables, largest
    first, with their rows (estimated on PostgreSQL and MySQL/MariaDB).

    The weekly size report of the runbooks: run it on a schedule (cron) and keep its
    --json. A store database that cannot be reached is listed with its error; the others
    are measured all the same. Store databases are read with the login migrations use.
    """
    settings = load_settings()
    with open_platform(settings) as platform:
        with platform.sessions() as session:
            tenants = tenant_targets(session, platform.box)
        targets = [
            Target("master", "master", settings.master_url),
            Target("billing", "billing", settings.billing_url),
            *tenants,
        ]
        progress = Progress(
            TextColumn("measuring databases"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[name]}"),
            TimeElapsedColumn(),
            console=err_console,
            disable=json_output,
            transient=True,
        )
        with progress:
            task = progress.add_task("sizes", total=len(targets), name="")
            found = size_report(
                targets, on_done=lambda d: progress.update(task, advance=1, name=d.name)
            )
    if json_output:
        emit_json(
            {
                "total_bytes": sum(d.bytes or 0 for d in found),
                "databases": [d.document(top) for d in found],
                "unreachable": sum(1 for d in found if d.error is not None),
            }
        )
        return
    _print(found, top or DEFAULT_TOP)


def _print(found: list[DatabaseSizes], top: int) -> None:
    overview = Table(title=f"databases ({len(found)})")
    for name in ("database", "role", "backend", "size", "tables", "rows"):
        overview.add_column(name, justify="right" if name in ("size", "tables", "rows") else "left")
    for d in found:
        if d.error is not None:
            overview.add_row(d.name, d.role, d.backend, f"[red]{d.error}[/]", "-", "-")
        else:
            overview.add_row(
                d.name,
                d.role,
                d.backend,
                human_bytes(d.bytes or 0),
                str(len(d.tables)),
                str(d.rows),
            )
    console.print(overview)
    for d in found:
        if d.error is not None or not d.tables:
            continue
        shown = d.tables[:top]
        table = Table(title=f"{d.name}: largest {len(shown)} of {len(d.tables)} tables")
        table.add_column("table")
        table.add_column("size", justify="right")
        table.add_column("bytes", justify="right")
        table.add_column("rows", justify="right")
        for t in shown:
            table.add_row(t.name, human_bytes(t.bytes), str(t.bytes), str(t.rows))
        console.print(table)
