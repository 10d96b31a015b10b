"""``tenantry backup``: take, list, show, verify, prune and pin backups; the schedule and status
commands (:mod:`tenantry.cli.backup_schedule`) and the policy subgroup
(:mod:`tenantry.cli.backup_policy`) are registered on the same group here."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tenantry.backup.storage import Storage, storage_for
from tenantry.cli.backup_policy import policy_app
from tenantry.cli.backup_schedule import schedule, status
from tenantry.cli.byte_progress import byte_progress, size_text
from tenantry.cli.common import open_platform, when
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    err_console,
    print_error,
    reports_errors,
)
from tenantry.errors import InvalidInput
from tenantry.operations import backup_prune, backup_run
from tenantry.runtime import Platform
from tenantry.services import audit
from tenantry.services.audit import cli_actor
from tenantry.services.backups import catalog, policies, retention
from tenantry.services.backups.targets import BackupTarget, resolve, scope_of, tenant_targets
from tenantry.services.backups.verification import get_backup
from tenantry.settings import load_settings

app = typer.Typer(help="Take, list, verify and prune backups of every database.")

DB_OPTION = typer.Option(
    None, "--db", help="The database: master, billing or store:SLUG (repeat the option)."
)


def _targets(platform: Platform, dbs: list[str], all_tenants: bool) -> list[BackupTarget]:
    if not dbs and not all_tenants:
        raise InvalidInput(
            "say which database to back up.",
            "Pass --db master, --db billing, --db store:SLUG (repeatable) or --all-tenants.",
        )
    with platform.sessions() as session:
        found = [resolve(session, platform.box, platform.settings, ref) for ref in dbs]
        if all_tenants:
            found += tenant_targets(session, platform.box, platform.settings)
    return found


def _verification_cell(verification: dict[str, Any] | None) -> str:
    if verification is None:
        return "-"
    if verification["passed"] is None:
        return f"[red]not run[/]: {escape(verification['error'])}"
    if not verification["passed"]:
        return "[red]FAILED[/]: " + escape("; ".join(verification["problems"]))
    notes = "; ".join(verification["notes"])
    return "[green]passed[/]" + (f" ({escape(notes)})" if notes else "")


def _print_outcomes(outcomes: list[backup_run.Outcome], storage: Storage) -> None:
    table = Table(title="backup run")
    for col in ("database", "backup", "status", "size", "verification"):
        table.add_column(col)
    for o in outcomes:
        if o.backup is None:
            table.add_row(o.scope, "-", "[red]failed[/]", "-", escape(o.error or ""))
            continue
        b = o.backup
        status = b.status if o.ok else f"[red]{b.status}[/]"
        table.add_row(
            o.scope,
            catalog.short(b.id),
            status,
            size_text(b.size_bytes),
            _verification_cell(o.verification),
        )
    console.print(table)
    for o in outcomes:
        if o.backup is not None:
            console.print(f"{o.scope}: {storage.location(o.backup.artifact_key)}")
        elif o.hint:
            err_console.print(f"[red]✗[/] {o.scope}: {escape(o.error or '')}")
            err_console.print(f"  [dim]{escape(o.hint)}[/]")
        if o.verification is not None and o.verification.get("hint"):
            err_console.print(f"  [dim]{escape(o.verification['hint'])}[/]")


@app.command()
@reports_errors
def run(
    db: list[str] = DB_OPTION,
    all_tenants: bool = typer.Option(False, "--all-tenants", help="Every active store's database."),
    label: str | None = typer.Option(None, "--label", help="A note kept with the backup."),
    pin: bool = typer.Option(False, "--pin", help="Never prune this backup."),
    verify: bool = typer.Option(
        False, "--verify", help="Also restore each backup into a scratch database and check it."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Back up databases now: dump, compress, hash, store, read back, record in the catalog.

    A backup counts only once the stored artifact was read back with the right size and
    SHA-256. Each database is its own outcome: one database's failed backup or restore test
    does not stop the others, and the table shows each; exits 1 if any failed. Without the
    privilege to use amcheck (PostgreSQL, not a superuser) verification still restores and
    counts rows, and says amcheck was skipped.
    """
    settings = load_settings()
    storage = storage_for(settings)
    outcomes: list[backup_run.Outcome] = []
    with open_platform(settings) as platform:
        targets = _targets(platform, db, all_tenants)
        if not targets and not json_output:
            console.print("no active store databases: nothing to back up")
        for target in targets:
            outcomes.append(
                backup_run.back_up_one(
                    platform,
                    storage,
                    target,
                    label=label,
                    pin=pin,
                    verify=verify,
                    show=partial(byte_progress, not json_output),
                    actor=cli_actor(),
                )
            )
    if json_output:
        documents = [o.document(storage) for o in outcomes]
        emit_json(documents[0] if len(documents) == 1 else documents)
    elif outcomes:
        _print_outcomes(outcomes, storage)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


@app.command("list")
@reports_errors
def list_(
    db: str | None = typer.Option(None, "--db", help="Only master, billing or store:SLUG."),
    status: str | None = typer.Option(None, "--status", help="Only backups in this status."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="At most this many."),
    json_output: bool = JSON_OPTION,
) -> None:
    """The backup catalog, newest first."""
    settings = load_settings()
    storage = storage_for(settings)
    with open_platform(settings) as platform, platform.sessions() as session:
        backups = catalog.list_backups(session, scope=db, status=status, limit=limit)
    if json_output:
        emit_json([catalog.backup_document(b, storage) for b in backups])
        return
    table = Table(title=f"backups ({storage.describe()})")
    for col in ("id", "database", "status", "taken", "size", "revision", "reason", "verified"):
        table.add_column(col)
    for b in backups:
        verified = (
            "-"
            if b.verify_passed is None
            else f"{'passed' if b.verify_passed else 'FAILED'} {b.verify_duration_ms} ms"
        )
        table.add_row(
            catalog.short(b.id),
            scope_of(b),
            b.status + (" 📌" if b.pinned else ""),
            when(b.started_at),
            size_text(b.size_bytes),
            b.schema_revision or "-",
            b.reason,
            verified,
        )
    console.print(table)


@app.command()
@reports_errors
def show(
    backup_id: str = typer.Argument(..., help="Backup id (or a unique prefix)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """One backup: its catalog entry, artifact location and row counts."""
    settings = load_settings()
    storage = storage_for(settings)
    with open_platform(settings) as platform, platform.sessions() as session:
        document = catalog.backup_document(get_backup(session, backup_id), storage)
    if json_output:
        emit_json(document)
        return
    counts = document.pop("row_counts")
    for key, value in document.items():
        console.print(f"[bold]{key}[/]: {value if value is not None else '-'}")
    console.print("[bold]row counts[/]:")
    for table_name, n in counts.items():
        console.print(f"  {table_name}: {n}")


@app.command("verify")
@reports_errors
def verify_(
    backup_id: str = typer.Argument(..., help="Backup id (or a unique prefix)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Restore a backup into a scratch database, check it and record the result.

    Checks: the artifact's size and SHA-256, the engine's own integrity check, row counts
    against the manifest, and the restored identity. The restore's duration is the measured
    recovery time, shown against the policy's RTO. Exits 1 if the backup failed.
    """
    settings = load_settings()
    storage = storage_for(settings)
    with open_platform(settings) as platform:
        with platform.sessions() as session:
            backup = get_backup(session, backup_id)
            policy = policies.policy_for(session, scope_of(backup))
        result = backup_run.verify_one(
            platform, storage, backup, partial(byte_progress, not json_output), actor=cli_actor()
        )
    document = {
        **asdict(result),
        "backup_id": str(result.backup_id),
        "rto_minutes": policy.rto_minutes,
        "rto_met": result.restore_seconds <= policy.rto_minutes * 60,
    }
    if json_output:
        emit_json(document)
    elif result.passed:
        console.print(
            f"[green]✓[/] backup {result.backup_id} restored and checked in "
            f"{result.restore_seconds:.2f} s (RTO {policy.rto_minutes} min)"
        )
        for note in result.notes:
            console.print(f"  [yellow]note[/]: {note}")
    else:
        err_console.print(f"[red]✗[/] backup {result.backup_id} is damaged; marked corrupt:")
        for problem in result.problems:
            print_error(f"  - {problem}", label="")
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@reports_errors
def prune(
    confirm: bool = typer.Option(
        False, "--confirm", help="Delete the backups listed (without it: a dry run)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Apply the retention policies: which backups go and why (a dry run unless --confirm).

    Never pruned: pinned backups, each database's newest verified (or newest good) backup,
    its newest min-keep backups, and anything of a database whose latest backup failed.
    """
    settings = load_settings()
    storage = storage_for(settings)
    with open_platform(settings) as platform:
        with platform.sessions() as session:
            decisions = retention.plan_prune(session)
        doomed = [d for d in decisions if d.prune]
        pruned = backup_prune.prune(platform.sessions, storage, decisions) if confirm else []
        if confirm and pruned:
            with platform.writer_sessions.begin() as session:
                audit.record(
                    session,
                    actor=cli_actor(),
                    action="backup.pruned",
                    target_type="backup",
                    details={"backups": [str(i) for i in pruned]},
                )
    if json_output:
        emit_json(
            {
                "dry_run": not confirm,
                "decisions": [{**asdict(d), "backup_id": str(d.backup_id)} for d in decisions],
                "pruned": [str(i) for i in pruned],
            }
        )
        return
    table = Table(title="retention" + ("" if confirm else " (dry run: nothing deleted)"))
    for col in ("backup", "database", "taken", "decision", "why"):
        table.add_column(col)
    for d in decisions:
        verdict = "[red]prune[/]" if d.prune else "[green]keep[/]"
        table.add_row(catalog.short(d.backup_id), d.scope, when(d.started_at), verdict, d.why)
    console.print(table)
    if confirm:
        console.print(f"pruned {len(pruned)} backup(s)")
    elif doomed:
        console.print(f"{len(doomed)} backup(s) would be pruned; run with --confirm to do it")


@app.command()
@reports_errors
def pin(
    backup_id: str = typer.Argument(..., help="Backup id (or a unique prefix)."),
    unpin: bool = typer.Option(False, "--unpin", help="Let retention prune it again."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Pin a backup so retention never deletes it (or unpin it)."""
    settings = load_settings()
    with open_platform(settings) as platform, platform.writer_sessions.begin() as session:
        backup = catalog.set_pinned(session, get_backup(session, backup_id), not unpin)
        audit.record(
            session,
            actor=cli_actor(),
            action="backup.unpinned" if unpin else "backup.pinned",
            target_type="backup",
            target_id=str(backup.id),
            store_id=backup.store_id,
        )
    if json_output:
        emit_json({"id": str(backup.id), "pinned": backup.pinned})
    else:
        console.print(f"backup {backup.id} {'unpinned' if unpin else 'pinned'}")


# Registered here, after the commands above, so `tenantry backup --help` lists them in this order.
app.command()(schedule)
app.command()(status)
app.add_typer(policy_app, name="policy")
