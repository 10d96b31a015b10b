"""Progress shown in bytes, for the commands that stream a backup (backup run and verify,
restore)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from tenantry.backup.artifacts import Progress as OnBytes
from tenantry.cli.output import err_console


@contextmanager
def byte_progress(show: bool, description: str) -> Iterator[OnBytes]:
    """A Rich progress line counting bytes read (the total is not known in advance)."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
    )
    with progress:
        task = progress.add_task(description, total=None)
        yield lambda n: progress.advance(task, n)


def size_text(n: int | None) -> str:
    """A byte count for people (``1.5 MiB``), ``-`` when unknown."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)
