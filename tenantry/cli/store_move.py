"""``tenantry stores move``: move a store's database to another server, with a progress bar
(registered on the ``stores`` group by :mod:`tenantry.cli.stores`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    confirm_or_exit,
    console,
    emit_json,
    err_console,
    print_error,
    reports_errors,
)
from tenantry.db.urls import mask
from tenantry.operations.move_destination import MoveDestination
from tenantry.operations.move_store import StoreMover
from tenantry.services import servers, stores
from tenantry.services.audit import cli_actor
from tenantry.services.connections import tenant_url
from tenantry.services.move_progress import MoveProgress, move_document
from tenantry.services.placement import SQLITE
from tenantry.settings import load_settings

_STEPS = {
    "starting": "starting",
    "draining": "waiting for writes in flight",
    "create_database": "creating the database",
    "create_tables": "creating tables",
    "copy": "copying rows",
    "verify": "verifying checksums",
    "switch": "switching",
    "source_read_only": "source read-only",
    "switched": "switched",
    "done": "done",
}


@reports_errors
def move(
    slug: str = typer.Argument(..., help="The store's slug (or id)."),
    to_server: str | None = typer.Option(
        None,
        "--to-server",
        "--server",
        help="The registered server to move the database to (a database of its own there), "
        "or `sqlite` for a file in the data dir.",
    ),
    to_shared: str | None = typer.Option(
        None,
        "--to-shared",
        metavar="SERVER[/DB]",
        help="Into the store's own schema of a shared PostgreSQL database instead "
        "(tenantry_shared_1 when no database is named; created when missing).",
    ),
    to_own_database: bool = typer.Option(
        False,
        "--to-own-database",
        help="A shared-schema store into a database of its own: on --server, or where "
        "placement picks when --server is left out.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Move a store's database to another registered server (any engine to any engine), into
    its own schema of a shared PostgreSQL database (--to-shared), or out of one into a
    database of its own (--to-own-database).

    Writes to the store are refused (HTTP 503 with Retry-After) while its data is copied
    table by table and verified (row counts and checksums); reads keep being served. Then the
    store switches to the new database in one step, and the old one is kept read-only for
    TENANTRY_MOVE_KEEP_SOURCE_DAYS days (MySQL/MariaDB cannot make one database read-only:
    the move says so; a shared-schema source's role loses its writes). Any failure rolls
    everything back: the new database (or schema) is dropped and the store stays where it
    was. The source must be at the schema's head revision. With --json the finished move is
    printed; the exit code is 1 when it was rolled back.
    """
    destination = MoveDestination.parse(to_server, to_shared, to_own_database)
    settings = load_settings()
    with open_platform(settings) as platform:
        with platform.sessions() as session:
            store = stores.get_store(session, slug)
            connection = stores.active_connection(session, store)
            source = mask(tenant_url(platform.box, connection)) if connection else "-"
            if connection is not None and connection.db_schema:
                source = f"schema {connection.db_schema} of {source}"
            if destination.server not in (None, SQLITE):
                # An unknown server is refused before asking.
                servers.get_server(session, str(destination.server))
        if not yes:
            confirm_or_exit(
                f"Move store {store.slug!r} from {source} to {destination.describe()}? Its writes "
                "are refused until the move ends",
                json_output,
                "Pass --yes to move without asking.",
            )
        progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            console=err_console,
            disable=json_output,
        )
        task = progress.add_task("starting", total=None)

        def show(state: MoveProgress) -> None:
            # Started by the first report: a refused move shows no bar, only its reason.
            if not progress.live.is_started:
                progress.start()
            done = state.rows_verified if state.step == "verify" else state.rows_copied
            progress.update(
                task,
                description=_STEPS.get(state.step, state.step),
                completed=done,
                total=state.total_rows,
            )

        mover = StoreMover(
            platform.sessions,
            platform.box,
            settings,
            platform.tenant_spec,
            actor=cli_actor(),
            on_progress=show,
        )
        try:
            moved = mover.move_to(store.id, destination)
        finally:
            progress.stop()
    doc = move_document(moved)
    failed = moved.status != "completed"
    if json_output:
        emit_json(doc)
    elif failed:
        err_console.print(f"[bold red]error:[/] the move of store {store.slug} was rolled back.")
        print_error(doc["error"] or "", label="")
        err_console.print(f"[dim]store {store.slug} is still served from {source}.[/]")
    else:
        _print_moved(doc)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _print_moved(doc: dict[str, Any]) -> None:
    details = doc["details"]
    target = details["target"]
    if target.get("schema"):
        what = f"schema {target['schema']} of shared database {target['database']}"
    elif target["engine"] == "sqlite":
        what = f"sqlite file {target['path']}"
    else:
        what = f"{target['engine']} database {target['database']}"
    console.print(
        f"[green]✓[/] moved store {doc['slug']} to server {doc['to_server']} "
        f"({what}): {details['total_rows']} rows "
        f"in {len(details['tables'])} tables copied and verified"
    )
    read_only = details.get("source_read_only") or {}
    mark = "[green]✓[/]" if read_only.get("applied") else "[yellow]![/]"
    console.print(f"{mark} source: {read_only.get('how', 'unknown')}")
    console.print(f"the source is kept until {when(doc['keep_source_until'])}")
