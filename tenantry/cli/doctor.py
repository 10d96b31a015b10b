"""``tenantry doctor``: the runbooks as checks, each with what it saw and the fix."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.markup import escape
from rich.table import Table

from tenantry.cli.output import JSON_OPTION, console, emit_json
from tenantry.db.urls import mask
from tenantry.errors import TenantryError
from tenantry.observability.checks import diagnose
from tenantry.observability.doctor import (
    Check,
    DoctorContext,
    Status,
    document,
    exit_code,
    ok,
    overall,
)
from tenantry.runtime import open_dispatcher
from tenantry.settings import Settings, load_settings

COLOURS = {Status.OK: "green", Status.WARNING: "yellow", Status.CRITICAL: "bold red"}


def doctor(json_output: bool = JSON_OPTION) -> None:
    """Check the installation as the runbooks would; each problem with the command that
    fixes it.

    Checks settings and connections, identities and pending migrations (master, billing, the
    fleet), worker and waiting work, webhook failures, backlog and signing secrets, backups
    against their policies, key file permissions, disk space, TLS and stale templates.
    Exits 0 when all is well, 1 with warnings only, 2 with anything critical. Servers that
    do not answer fail within their connect timeout; nothing is changed.
    """
    results = run()
    status = overall(results)
    if json_output:
        emit_json(document(results))
    else:
        _print(results, status)
    raise typer.Exit(exit_code(status))


def run() -> list[Check]:
    """Every check's result for the settings in the environment."""
    try:
        settings = load_settings()
    except TenantryError as exc:
        return [
            Check("settings", Status.CRITICAL, exc.message, exc.hint),
            Check("other checks", Status.CRITICAL, "not checked: the settings do not parse"),
        ]
    try:
        dispatcher = open_dispatcher(settings)
    except TenantryError as exc:
        queue = Check("job queue", Status.CRITICAL, exc.message, exc.hint)
        return [_settings(settings), queue, *_diagnosed(settings, None)]
    try:
        return [_settings(settings), *_diagnosed(settings, dispatcher.depth)]
    finally:
        dispatcher.close()


def _diagnosed(settings: Settings, queue_depth: Callable[[], int] | None) -> list[Check]:
    context = DoctorContext.open(settings, queue_depth=queue_depth)
    try:
        return diagnose(context)
    finally:
        context.close()


def _settings(settings: Settings) -> Check:
    try:
        master, billing = mask(settings.master_url), mask(settings.billing_url)
    except TenantryError as exc:
        return Check("settings", Status.CRITICAL, exc.message, exc.hint)
    queue = "Redis" if settings.queue_url else "the embedded queue"
    return ok(
        "settings",
        f"data dir {settings.data_dir}; master {master}; billing {billing}; queue: {queue}",
    )


def _print(results: list[Check], status: Status) -> None:
    table = Table(title="tenantry doctor", show_lines=False)
    for column in ("check", "status", "evidence", "fix"):
        table.add_column(column, overflow="fold")
    for result in results:
        colour = COLOURS[result.status]
        named = result.operation_id and result.operation_id not in result.evidence
        about = f" (operation {result.operation_id})" if named else ""
        table.add_row(
            escape(result.name),
            f"[{colour}]{result.status.value}[/]",
            escape(result.evidence + about),
            escape(result.fix or ""),
        )
    console.print(table)
    counts = {s: sum(1 for r in results if r.status is s) for s in Status}
    console.print(
        f"[{COLOURS[status]}]{status.value}[/]: {counts[Status.OK]} ok, "
        f"{counts[Status.WARNING]} warning(s), {counts[Status.CRITICAL]} critical"
    )
