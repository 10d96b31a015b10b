"""``tenantry recover``: take back data deleted by mistake from a backup, without a restore."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import typer
from rich.markup import escape
from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tenantry.backup.artifacts import Progress as OnBytes
from tenantry.backup.storage import storage_for
from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, err_console, reports_errors
from tenantry.errors import InvalidInput
from tenantry.operations.recover_rows import recover_rows
from tenantry.services.audit import cli_actor
from tenantry.services.backups.recovery import FORMATS, RowRecovery
from tenantry.services.backups.recovery_output import write_rows
from tenantry.settings import load_settings

app = typer.Typer(help="Recover data from a backup without restoring the whole database.")


@contextmanager
def _opened(output: str | None) -> Iterator[IO[str]]:
    """Where the rows go: stdout for ``None`` or ``-``, else a new file readable by its owner."""
    if output is None or output == "-":
        yield sys.stdout
        return
    path = Path(output)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InvalidInput(
            f"cannot write --output {output}: {exc.strerror}.",
            "Give a file in a directory that exists and that you can write to.",
        ) from None
    with open(fd, "w", encoding="utf-8", newline="") as out:
        yield out


@app.command("rows")
@reports_errors
def rows(
    backup: str = typer.Option(..., "--backup", help="Backup id (or a unique prefix)."),
    table: str = typer.Option(..., "--table", help="The table to recover rows of."),
    where: str | None = typer.Option(
        None,
        "--where",
        help="Only rows of the backup matching this SQL condition (raw SQL in the backup "
        "engine's dialect, e.g. \"created_at < '2026-01-22'\"). It runs only on the scratch "
        "copy of the backup, read-only; ';' is refused.",
    ),
    fmt: str = typer.Option("sql", "--format", help="sql (INSERT statements) or csv."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Write the rows to this file (default: stdout)."
    ),
    apply: bool = typer.Option(
        False, "--apply", help="Insert the missing rows into the live database (one transaction)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """List rows that a backup holds and the live database lacks, and optionally put them back.

    The backup is restored into a scratch database (dropped afterwards) and the table's rows
    are matched with the live ones by primary key. Rows in both are never touched. The
    missing ones are written for review as INSERT statements for the live database (or CSV)
    to --output or stdout; with --json only the counts are printed, and the rows only go to
    --output. --apply inserts them in one transaction: all of them, or none if any fails.

    The live database is the backup's own (master, billing or the store's database); it must
    be the same instance as the backup, or nothing is done. tenantry's own tables
    (tenantry_*) are refused.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is unknown.", "Use --format sql or --format csv.")
    if json_output and output == "-":
        raise InvalidInput(
            "--json prints its document on stdout, so the rows cannot go there too.",
            "Give --output FILE for the rows.",
        )
    if output not in (None, "-"):
        folder = Path(str(output)).resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise InvalidInput(
                f"cannot write --output {output}: {folder} is not a directory you can write to.",
                "Give a file in a directory that exists and that you can write to.",
            )
    settings = load_settings()
    storage = storage_for(settings)
    to_stdout = output in (None, "-") and not json_output
    written = to_stdout or output not in (None, "-")
    with (
        open_platform(settings) as platform,
        _progress(not json_output) as (advance, describe, stop),
    ):

        def write_out(recovery: RowRecovery) -> None:
            stop()  # the rows may go to stdout: the progress display ends first
            if written:
                with _opened(output) as out:
                    write_rows(recovery, out, fmt)

        recovery, applied = recover_rows(
            platform.sessions,
            platform.box,
            settings,
            storage,
            backup,
            table,
            where=where,
            apply=apply,
            on_progress=advance,
            on_status=describe,
            before_apply=write_out,
            actor=cli_actor(),
        )
    if json_output:
        emit_json(
            {
                **recovery.document(),
                "applied": applied,
                "format": fmt,
                "output": output if written else None,
            }
        )
        return
    # Rows printed on stdout stay clean SQL or CSV: the report goes to stderr then.
    report = err_console if to_stdout else console
    report.print(
        f"{recovery.table.name} in backup {recovery.backup_id}: {recovery.in_backup} row(s)"
        + (" matching the filter" if recovery.where else "")
        + f", {recovery.already_present} still in {recovery.scope}, "
        f"[bold]{recovery.missing} missing[/]"
    )
    if written and not to_stdout:
        report.print(f"  the missing rows ({fmt}) are in {escape(str(output))}")
    if applied is not None:
        report.print(
            f"[green]✓[/] inserted {applied} row(s) into {recovery.table.name} of "
            f"{recovery.scope} in one transaction"
        )


@contextmanager
def _progress(
    show: bool,
) -> Iterator[tuple[OnBytes, Callable[[str], None], Callable[[], None]]]:
    """Progress on stderr: bytes of the backup restored, then what is being done; and a way
    to end it early."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
        transient=True,
    )
    with progress:
        task = progress.add_task("opening the backup", total=None)
        yield (
            lambda n: progress.advance(task, n),
            lambda text: progress.update(task, description=text),
            progress.stop,
        )
