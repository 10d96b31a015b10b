"""``tenantry restore``: put a backup back, after showing the plan and asking."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from tenantry.backup.storage import storage_for
from tenantry.cli.byte_progress import byte_progress
from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, err_console, reports_errors
from tenantry.errors import InvalidInput
from tenantry.operations.restore import restore
from tenantry.services.audit import cli_actor
from tenantry.services.backups.restore_plan import RestorePlan, plan_restore
from tenantry.settings import load_settings


def _print_plan(plan: RestorePlan) -> None:
    table = Table(title="restore plan", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    document = plan.document()
    for key in ("backup", "role", "store", "taken_at", "schema_revision", "target", "method"):
        table.add_row(key.replace("_", " "), str(document[key] or "-"))
    table.add_row("target now", plan.target_identity or "empty or missing")
    console.print(table)
    for note in plan.notes:
        console.print(f"  • {note}")


@reports_errors
def restore_command(
    backup_id: str = typer.Argument(..., help="Backup id (or a unique prefix)."),
    target: str | None = typer.Option(
        None, "--target", help="Restore into this database URL (new, empty, or the same one)."
    ),
    in_place: bool = typer.Option(
        False, "--in-place", help="Replace the backup's own database (master, billing, store)."
    ),
    confirm: str | None = typer.Option(
        None, "--confirm", help="The target database's name, to replace a live one in scripts."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Restore a backup into a database, after showing the plan.

    Refused: a target of another role (a billing backup never lands in master), of another
    instance, or a non-empty database without tenantry identity. A live target is replaced
    only when you type its name (or pass --confirm NAME), after a pinned safety backup of
    it; the backup is restored into a new database and checked before it replaces the
    target in one step, so a failure leaves the target as it was.
    """
    settings = load_settings()
    storage = storage_for(settings)
    with open_platform(settings) as platform:
        with platform.sessions() as session:
            plan = plan_restore(
                session, platform.box, settings, backup_id, target=target, in_place=in_place
            )
        if not json_output:
            _print_plan(plan)
        if dry_run:
            if json_output:
                emit_json({"plan": plan.document(), "restored": False})
            return
        if plan.live and confirm is None:
            if json_output or not sys.stdin.isatty():
                raise InvalidInput(
                    f"{plan.target_shown} is a live database; restoring replaces all its data. "
                    "Nothing was changed.",
                    f"Pass --confirm {plan.confirm_name} to confirm from a script.",
                )
            confirm = typer.prompt(
                f"{plan.target_shown} holds data. Type its name ({plan.confirm_name}) to replace it"
            )
        # Restoring master replaces the database this process holds connections to.
        with byte_progress(not json_output, "restoring") as advance:
            result = restore(
                platform.sessions,
                storage,
                settings,
                plan,
                confirm=confirm,
                on_progress=advance,
                before_switch=platform.master_engine.dispose,
                actor=cli_actor(),
            )
    if json_output:
        emit_json(
            {
                "plan": plan.document(),
                "restored": True,
                "operation": str(result.operation_id) if result.operation_id else None,
                "seconds": round(result.seconds, 3),
                "safety_backup": str(result.safety_backup_id) if result.safety_backup_id else None,
                "row_counts": result.row_counts,
            }
        )
        return
    console.print(
        f"[green]✓[/] restored backup {result.backup_id} into {result.target} "
        f"in {result.seconds:.2f} s"
    )
    if result.safety_backup_id:
        err_console.print(
            f"  the previous contents are in safety backup {result.safety_backup_id} (pinned)"
        )
