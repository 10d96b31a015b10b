"""``tenantry init``: the data dir, the key file, and master and billing at head."""

from __future__ import annotations

from typing import Any

import typer

from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.operations.init import run_init
from tenantry.settings import load_settings


def print_init_report(report: dict[str, Any]) -> None:
    """Show what ``run_init`` did, one line per change."""
    for line in report["changes"]:
        console.print(f"[green]✓[/] {line}")
    if not report["changes"]:
        console.print("[green]✓[/] already initialised; nothing changed")
    console.print(f"data dir: {report['data_dir']}")


@reports_errors
def init(json_output: bool = JSON_OPTION) -> None:
    """Create the data dir, the key file and the master and billing databases at head.

    Safe to run again: what exists is left as it is.
    """
    report = run_init(load_settings())
    if json_output:
        emit_json(report)
        return
    print_init_report(report)
    typer.echo("next: tenantry db status")
