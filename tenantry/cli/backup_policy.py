"""``tenantry backup policy``: how often each database is backed up and how long kept."""

from __future__ import annotations

import typer
from rich.table import Table

from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.services import audit
from tenantry.services.audit import cli_actor
from tenantry.services.backups import policies
from tenantry.settings import load_settings

policy_app = typer.Typer(help="How often each database is backed up and how long kept.")


@policy_app.command("list")
@reports_errors
def policy_list(json_output: bool = JSON_OPTION) -> None:
    """The effective policies: master, billing, tenants, and per-store overrides."""
    settings = load_settings()
    with open_platform(settings) as platform, platform.sessions() as session:
        found = policies.list_policies(session)
    if json_output:
        emit_json([p.document() for p in found])
        return
    console.print(_policy_table("backup policies", found))


def _policy_table(title: str, found: list[policies.Policy]) -> Table:
    table = Table(title=title)
    for col in (
        "scope",
        "schedule",
        "keep days",
        "min keep",
        "max age h",
        "RTO min",
        "verify",
        "from",
    ):
        table.add_column(col)
    for p in found:
        table.add_row(
            p.scope + ("" if p.enabled else " (off)"),
            p.schedule,
            str(p.retention_days),
            str(p.min_keep),
            str(p.max_age_hours),
            str(p.rto_minutes),
            p.verify_schedule,
            p.source,
        )
    return table


@policy_app.command("set")
@reports_errors
def policy_set(
    scope: str = typer.Argument(..., help="master, billing, tenant (every store) or store:SLUG."),
    schedule_: str | None = typer.Option(None, "--schedule", help="Cron: when backups run."),
    retention_days: int | None = typer.Option(None, "--retention-days", help="Keep this long."),
    min_keep: int | None = typer.Option(None, "--min-keep", help="Always keep this many."),
    max_age_hours: int | None = typer.Option(
        None, "--max-age-hours", help="Unprotected when the newest good backup is older."
    ),
    rto_minutes: int | None = typer.Option(None, "--rto-minutes", help="Recovery time objective."),
    verify_schedule: str | None = typer.Option(
        None, "--verify-schedule", help="Cron: when the newest backup is restored as a test."
    ),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled", help="Run it at all."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Override a policy's values (the others keep their current value)."""
    settings = load_settings()
    with open_platform(settings) as platform, platform.writer_sessions.begin() as session:
        policy = policies.set_policy(
            session,
            scope,
            schedule=schedule_,
            retention_days=retention_days,
            min_keep=min_keep,
            max_age_hours=max_age_hours,
            rto_minutes=rto_minutes,
            verify_schedule=verify_schedule,
            enabled=enabled,
        )
        audit.record(
            session,
            actor=cli_actor(),
            action="backup.policy_set",
            target_type="backup_policy",
            target_id=scope,
            details=policy.document(),
        )
    if json_output:
        emit_json(policy.document())
    else:
        console.print(_policy_table(f"backup policy {policy.scope} (set)", [policy]))
