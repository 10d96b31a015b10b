"""``tenantry stores usage``: a store's daily usage, and measuring it now (registered on the
``stores`` group by :mod:`tenantry.cli.stores`)."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    err_console,
    reports_errors,
)
from tenantry.errors import InvalidInput
from tenantry.operations import usage_rollup
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.usage import StoreUsage, human_bytes, store_usage, validate_days
from tenantry.settings import load_settings


@reports_errors
def usage(
    slug: str | None = typer.Argument(None, help="The store's slug (or id)."),
    days: int = typer.Option(
        30, "--days", help="The last this many UTC days, today included (1 to 366)."
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Measure the store's database and API calls now, first."
    ),
    all_stores: bool = typer.Option(
        False, "--all", help="With --refresh: measure every active store (a progress bar)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show a store's daily usage: products, orders, storage and API calls per UTC day.

    The worker writes the rows: today's at most every TENANTRY_USAGE_REFRESH_MINUTES (60),
    and yesterday's once after midnight UTC. --refresh measures now (today's row, and
    yesterday's if the store was not measured since midnight) and keeps the store's
    storage_used_bytes, which the plan's storage limit is checked against, current. With
    --all --refresh every active store is measured in turn, one store's failure not stopping
    the others (exit code 1 when any failed). Storage is the size the database server
    reports for the store's database; errors are calls answered with a status of 400 or
    more. Table columns: products in all, +new / ~chg / -del products created, changed and
    deleted that day, orders placed, their value (minor units), storage, API calls, errors.
    """
    validate_days(days)
    if all_stores and not refresh:
        raise InvalidInput("--all goes with --refresh.", "Show one store's usage by its slug.")
    if (slug is None) == (not all_stores):
        raise InvalidInput("give either a store's slug or --all --refresh.", "See --help.")
    with open_platform(load_settings()) as platform:
        if all_stores:
            _refresh_all(platform, json_output)
            return
        assert slug is not None
        if refresh:
            with platform.sessions() as session:
                store_id = stores.get_store(session, slug).id
            usage_rollup.rollup_store(platform, store_id)
        with platform.sessions() as session:
            shown = store_usage(session, stores.get_store(session, slug), days)
    if json_output:
        emit_json(shown.document())
    else:
        _print_usage(shown, days)


def _refresh_all(platform: Platform, json_output: bool) -> None:
    targets = usage_rollup.active_stores(platform)
    progress = Progress(
        TextColumn("measuring stores"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[store]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_output,
    )
    with progress:
        task = progress.add_task("usage", total=len(targets), store="")
        outcomes = usage_rollup.rollup_many(
            platform,
            targets,
            on_done=lambda o: progress.update(task, advance=1, store=o.slug),
        )
    failed = [o for o in outcomes if o.error is not None]
    if json_output:
        emit_json({"items": [o.document() for o in outcomes], "failed": len(failed)})
    else:
        if not outcomes:
            console.print("no active store to measure")
        for outcome in outcomes:
            if outcome.error is None:
                size = human_bytes(outcome.storage_bytes or 0)
                days = ", ".join(d.isoformat() for d in outcome.days)
                console.print(f"[green]✓[/] {outcome.slug}: {size} ({days})")
            else:
                console.print(f"[red]✗[/] {outcome.slug}: {outcome.error}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _storage_line(shown: StoreUsage) -> str:
    used = human_bytes(shown.storage_used_bytes)
    limit = (
        "no limit"
        if shown.storage_limit_bytes is None
        else f"of {human_bytes(shown.storage_limit_bytes)}"
    )
    measured = (
        f"measured {when(shown.storage_measured_at)}"
        if shown.storage_measured_at
        else "never measured: `tenantry stores usage SLUG --refresh`"
    )
    return f"storage {used} {limit} ({measured})"


def _print_usage(shown: StoreUsage, days: int) -> None:
    table = Table(
        title=f"usage of store {shown.store}, {shown.plan} plan, last {days} day(s)",
        caption=_storage_line(shown) + "; value: orders' totals in minor units",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    columns: list[tuple[str, Any]] = [
        ("date", lambda d: d.date.isoformat()),
        ("products", lambda d: str(d.total_products)),
        ("+new", lambda d: str(d.products_created)),
        ("~chg", lambda d: str(d.products_updated)),
        ("-del", lambda d: str(d.products_deleted)),
        ("orders", lambda d: str(d.orders_created)),
        ("value", lambda d: str(d.orders_total_value_minor)),
        ("storage", lambda d: human_bytes(d.storage_total_bytes)),
        ("calls", lambda d: str(d.api_calls)),
        ("errs", lambda d: str(d.api_errors)),
    ]
    for name, _ in columns:
        table.add_column(name, justify="left" if name == "date" else "right", no_wrap=True)
    for day in shown.days:
        table.add_row(*(cell(day) for _, cell in columns))
    if not shown.days:
        console.print(
            f"no usage rows for store {shown.store} in the last {days} day(s) yet: the worker "
            "writes them, or `tenantry stores usage SLUG --refresh` now."
        )
        console.print(_storage_line(shown))
        return
    console.print(table)
