"""``tenantry backup schedule`` and ``tenantry backup status``: running what is due, and each
database's protection against its policy (registered on the ``backup`` group by
:mod:`tenantry.cli.backup`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tenantry.backup.storage import storage_for
from tenantry.cli.common import open_platform, when
from tenantry.cli.output import EXIT_FAILED, JSON_OPTION, console, emit_json, reports_errors
from tenantry.operations import backup_schedule
from tenantry.services.backups import scheduling
from tenantry.services.backups.scheduling import STATUS_MAX
from tenantry.services.fleet_status import check_page
from tenantry.settings import load_settings

#: Stores per page of ``backup status`` unless --limit says otherwise.
STATUS_LIMIT = 100


@reports_errors
def schedule(json_output: bool = JSON_OPTION) -> None:
    """Run what is due now: scheduled backups, restore tests, then pruning.

    `tenantry up` runs this every minute in its worker; run it from cron otherwise.
    """
    settings = load_settings()
    storage = storage_for(settings)
    with open_platform(settings) as platform:
        report = backup_schedule.tick(
            platform.sessions,
            storage,
            settings,
            platform.box,
            on_event=None if json_output else console.print,
        )
    if json_output:
        emit_json(
            {
                "backed_up": [str(i) for i in report.backed_up],
                "verified": [str(i) for i in report.verified],
                "pruned": [str(i) for i in report.pruned],
                "failures": report.failures,
                "skipped": report.skipped,
            }
        )
    elif report.skipped:
        console.print(f"nothing done: {report.skipped}")
    elif not (report.backed_up or report.verified or report.pruned or report.failures):
        console.print("nothing due")
    if report.failures:
        raise typer.Exit(EXIT_FAILED)


@reports_errors
def status(
    limit: int = typer.Option(
        STATUS_LIMIT,
        "--limit",
        help=f"Stores per page (1 to {STATUS_MAX}), in slug order; master and billing open the "
        "first page.",
    ),
    cursor: str | None = typer.Option(
        None, "--cursor", help="Start after this store: the next-page cursor a page printed."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Each database's protection: newest good backup, age against its policy, last restore
    test against the RTO.

    Master and billing, then the stores a page at a time (--limit, in slug order); the next
    page's command is printed (JSON: next_cursor). Exits 1 if any database on the page is
    unprotected (`tenantry doctor` checks every database at once).
    """
    check_page(limit, cursor, most=STATUS_MAX, listing="backup status")
    settings = load_settings()
    with open_platform(settings) as platform, platform.sessions() as session:
        scopes, following = scheduling.scope_page(session, limit=limit, after=cursor)
        states = scheduling.protection(session, scopes)
    rows = [
        {
            "scope": s.scope,
            "protected": s.protected,
            "unverifiable": s.unverifiable,
            "last_good": str(s.last_good.id) if s.last_good else None,
            "last_good_at": s.last_good.started_at if s.last_good else None,
            "last_attempt_status": s.last_attempt.status if s.last_attempt else None,
            "backup_due": s.backup_due,
            "verify_due": s.verify_due,
            "last_restore_ms": s.last_verified.verify_duration_ms if s.last_verified else None,
            "rto_minutes": s.policy.rto_minutes,
            "rto_met": s.rto_met,
            "policy": s.policy.document(),
        }
        for s in states
    ]
    if json_output:
        emit_json({"databases": rows, "limit": limit, "next_cursor": following})
    else:
        _print_status(states, rows)
        if following is not None:
            console.print(
                f"more stores: tenantry backup status --limit {limit} --cursor {following}"
            )
    if not all(s.protected for s in states):
        raise typer.Exit(EXIT_FAILED)


def _print_status(states: list[scheduling.Protection], rows: list[dict[str, Any]]) -> None:
    table = Table(title="backup protection")
    for col in ("database", "protected", "newest good", "last attempt", "restore test", "RTO"):
        table.add_column(col)
    for row, s in zip(rows, states, strict=True):
        restore = "-" if row["last_restore_ms"] is None else f"{row['last_restore_ms']} ms"
        table.add_row(
            s.scope,
            "[green]yes[/]"
            if s.protected
            else ("[red]NO (unverifiable)[/]" if s.unverifiable else "[red]NO[/]"),
            when(s.last_good.started_at if s.last_good else None),
            s.last_attempt.status if s.last_attempt else "-",
            restore,
            f"{s.policy.rto_minutes} min"
            + ("" if s.rto_met is None else (" ✓" if s.rto_met else " ✗")),
        )
    console.print(table)
    for s in states:
        if s.unverifiable:
            console.print(f"[yellow]![/] {s.scope}: {s.unverifiable}")
