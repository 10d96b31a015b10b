"""``tenantry stores moves list``: the moves of stores' databases, with where each went and
what became of its source (registered on the ``stores`` group by :mod:`tenantry.cli.stores`)."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.services import stores
from tenantry.services.move_history import MAX_LIMIT, list_moves, move_row
from tenantry.settings import load_settings

app = typer.Typer(help="The moves of stores' databases between servers.", no_args_is_help=True)


@app.command("list")
@reports_errors
def list_(
    store: str | None = typer.Option(None, "--store", help="Only this store's moves (slug or id)."),
    limit: int = typer.Option(100, "--limit", min=1, max=MAX_LIMIT, help="Show at most this many."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List moves, newest first: store, from, to, status, when, and the source it kept
    (`kept` until its keep period ends, then `dropped` by the worker's scheduler)."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        store_id = stores.get_store(session, store).id if store else None
        rows = [move_row(m) for m in list_moves(session, store_id=store_id, limit=limit)]
    if json_output:
        emit_json(rows)
        return
    if not rows:
        console.print("no moves")
        return
    table = Table()
    for column in ("id", "store", "from", "to", "status", "finished", "source"):
        table.add_column(column)
    for row in rows:
        source = row["source"]
        if source == "kept":
            source = f"kept until {when(row['keep_source_until'])}"
        status = row["status"] if not row["error"] else f"{row['status']}: {row['error']}"
        table.add_row(
            row["id"][:8],
            escape(row["store"] or "?"),
            escape(row["from"]),
            escape(row["to"]),
            escape(status),
            when(row["finished_at"]),
            source,
        )
    console.print(table)
