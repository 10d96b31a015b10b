"""``tenantry import shared --queue``: each store's import handed to the workers, followed
from master with ``--wait``."""

from __future__ import annotations

import time
import uuid

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from tenantry.cli.output import console, err_console
from tenantry.cli.waiting import DEFAULT_TIMEOUT_S, WorkerWatch
from tenantry.db.master.models import ACTIVE_STATUSES, Operation
from tenantry.imports.plan import ImportPlan
from tenantry.operations.import_progress import StoreOutcome
from tenantry.operations.import_queued import queue_import
from tenantry.operations.import_shared import SharedImport
from tenantry.runtime import Platform, open_dispatcher

#: How often --wait reads the store imports' progress from master.
POLL_S = 0.5


def run_queued(
    job: SharedImport, plan: ImportPlan, *, wait: bool, timeout: float | None, show: bool
) -> list[StoreOutcome]:
    """Queue ``plan``'s store imports for the workers; with ``wait``, follow them until they
    end (or ``timeout``), else their outcomes as queued."""
    operations = queue_import(job, plan)
    skipped = [
        StoreOutcome(t.slug, "skipped", t.imported_by, error="already imported")
        for t in plan.stores
        if t.imported_by is not None
    ]
    dispatcher = open_dispatcher(job.platform.settings)
    try:
        for operation_id in operations.values():
            dispatcher.enqueue_import(operation_id)
    finally:
        dispatcher.close()
    if show:
        console.print(
            f"{len(operations)} store import(s) queued for the workers"
            + ("" if wait else "; follow them with `tenantry ops list --kind import`")
        )
    if wait and operations:
        _follow(job.platform, operations, timeout, show)
    return skipped + _outcomes(job.platform, operations)


def _operations(platform: Platform, operations: dict[str, uuid.UUID]) -> dict[uuid.UUID, Operation]:
    with platform.sessions() as session:
        found = session.scalars(select(Operation).where(Operation.id.in_(operations.values())))
        rows = {op.id: op for op in found}
        session.expunge_all()
    return rows


def _outcomes(platform: Platform, operations: dict[str, uuid.UUID]) -> list[StoreOutcome]:
    rows = _operations(platform, operations)
    return [
        StoreOutcome(
            slug,
            str(rows[op_id].status),
            op_id,
            rows=rows[op_id].progress_current,
            resumed=rows[op_id].attempts > 1,
            error=rows[op_id].error,
        )
        for slug, op_id in operations.items()
    ]


def _follow(
    platform: Platform, operations: dict[str, uuid.UUID], timeout: float | None, show: bool
) -> None:
    """Show the workers' progress until every store import ended or ``timeout`` passed."""
    watch = WorkerWatch(
        platform.sessions,
        what=f"this import ({len(operations)} stores)",
        patient=timeout is not None,
        quiet=not show,
        start_hint="Start a worker with `tenantry worker` (or `tenantry up`, which runs one).",
    )
    limit = DEFAULT_TIMEOUT_S if timeout is None else timeout
    deadline = time.monotonic() + limit
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows · {task.fields[stores]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )
    with progress:
        task = progress.add_task("workers importing", total=None, stores="")
        while True:
            rows = _operations(platform, operations).values()
            running = sum(op.status in ACTIVE_STATUSES for op in rows)
            progress.update(
                task,
                total=sum(op.progress_total or 0 for op in rows),
                completed=sum(op.progress_current for op in rows),
                stores=f"{len(rows) - running}/{len(rows)} stores ended",
            )
            if not running:
                return
            watch.check()
            if time.monotonic() >= deadline:
                err_console.print(
                    f"[yellow]stopped following after {limit:.0f} s; the imports go on while "
                    "workers run (`tenantry ops list --kind import`)[/]"
                )
                return
            time.sleep(POLL_S)
