"""``tenantry backup``: take, list, verify and prune backups; policies and the scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from tenantry.backup.artifacts import Progress as OnBytes
from tenantry.backup.storage import Storage, storage_for
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
from tenantry.db.master.models import Backup
from tenantry.errors import InvalidInput, TenantryError
from tenantry.runtime import Platform
from tenantry.services import audit
from tenantry.services.backups import catalog, policies, retention, scheduling
from tenantry.services.backups.taking import error_text, take_backup
from tenantry.services.backups.targets import (
    BackupTarget,
    resolve,
    scope_of,
    scratch_server,
    tenant_targets,
)
from tenantry.services.backups.verification import get_backup, verify_backup
from tenantry.settings import load_settings

app = typer.Typer(help="Take, list, verify and prune backups of every database.")
policy_app = typer.Typer(help="How often each database is backed up and how long kept.")
app.add_typer(policy_app, name="policy")

DB_OPTION = typer.Option(
    None, "--db", help="The database: master, billing or store:SLUG (repeat the option)."
)


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


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


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


@dataclass
class _Outcome:
    """One database's part of ``backup run``: its backup, and its restore test if asked."""

    scope: str
    backup: Backup | None = None
    error: str | None = None
    hint: str | None = None
    verification: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Backed up, and (when asked) verified."""
        if self.backup is None:
            return False
        return self.verification is None or self.verification["passed"] is True

    def document(self, storage: Storage) -> dict[str, Any]:
        """As JSON: the catalog entry (or the failure), with the verification's outcome."""
        if self.backup is None:
            return {"scope": self.scope, "status": "failed", "error": self.error, "hint": self.hint}
        doc = catalog.backup_document(self.backup, storage)
        if self.verification is not None:
            doc["verification"] = self.verification
        return doc


def _failure(exc: Exception, target: BackupTarget) -> tuple[str, str | None]:
    """What went wrong and what to do, never a credential (any exception, not only ours)."""
    if isinstance(exc, TenantryError):
        return exc.message, exc.hint
    return error_text(exc, target), "See the message above; the other databases were attempted."


def _back_up_one(
    platform: Platform,
    storage: Storage,
    target: BackupTarget,
    *,
    label: str | None,
    pin: bool,
    verify: bool,
    show: bool,
) -> _Outcome:
    """Back up (and verify) one database; any failure is this database's outcome only."""
    outcome = _Outcome(target.scope)
    try:
        with byte_progress(show, f"backing up {target.scope}") as advance:
            outcome.backup = take_backup(
                platform.sessions,
                storage,
                target,
                label=label,
                pinned=pin,
                level=platform.settings.backup_zstd_level,
                on_progress=advance,
            )
    except Exception as exc:
        outcome.error, outcome.hint = _failure(exc, target)
        return outcome
    if not verify:
        return outcome
    try:
        result = _verify_one(platform, storage, outcome.backup, show=show)
        outcome.verification = {
            "passed": result.passed,
            "restore_seconds": round(result.restore_seconds, 3),
            "problems": result.problems,
            "notes": result.notes,
        }
    except Exception as exc:
        message, hint = _failure(exc, target)
        outcome.verification = {"passed": None, "error": message, "hint": hint}
    with platform.sessions() as session:
        outcome.backup = get_backup(session, outcome.backup.id)
    return outcome


def _verification_cell(verification: dict[str, Any] | None) -> str:
    if verification is None:
        return "-"
    if verification["passed"] is None:
        return f"[red]not run[/]: {escape(verification['error'])}"
    if not verification["passed"]:
        return "[red]FAILED[/]: " + escape("; ".join(verification["problems"]))
    notes = "; ".join(verification["notes"])
    return "[green]passed[/]" + (f" ({escape(notes)})" if notes else "")


def _print_outcomes(outcomes: list[_Outcome], storage: Storage) -> None:
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
            _size(b.size_bytes),
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
    outcomes: list[_Outcome] = []
    with open_platform(settings) as platform:
        targets = _targets(platform, db, all_tenants)
        if not targets and not json_output:
            console.print("no active store databases: nothing to back up")
        for target in targets:
            outcomes.append(
                _back_up_one(
                    platform,
                    storage,
                    target,
                    label=label,
                    pin=pin,
                    verify=verify,
                    show=not json_output,
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
            _size(b.size_bytes),
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


def _verify_one(platform: Platform, storage: Storage, backup: Backup, *, show: bool) -> Any:
    with platform.sessions() as session:
        server = scratch_server(session, platform.box, platform.settings, backup)
    with byte_progress(
        show, f"restoring {catalog.short(backup.id)} into a scratch database"
    ) as advance:
        return verify_backup(platform.sessions, storage, backup.id, server, on_progress=advance)


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
        result = _verify_one(platform, storage, backup, show=not json_output)
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
        pruned = retention.prune(platform.sessions, storage, decisions) if confirm else []
        if confirm and pruned:
            with platform.writer_sessions.begin() as session:
                audit.record(
                    session,
                    actor="cli",
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
            actor="cli",
            action="backup.unpinned" if unpin else "backup.pinned",
            target_type="backup",
            target_id=str(backup.id),
            store_id=backup.store_id,
        )
    if json_output:
        emit_json({"id": str(backup.id), "pinned": backup.pinned})
    else:
        console.print(f"backup {backup.id} {'unpinned' if unpin else 'pinned'}")


@app.command()
@reports_errors
def schedule(json_output: bool = JSON_OPTION) -> None:
    """Run what is due now: scheduled backups, restore tests, then pruning.

    `tenantry up` runs this every minute in its worker; run it from cron otherwise.
    """
    settings = load_settings()
    storage = storage_for(settings)
    with open_platform(settings) as platform:
        report = scheduling.tick(
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


@app.command()
@reports_errors
def status(json_output: bool = JSON_OPTION) -> None:
    """Each database's protection: newest good backup, age against its policy, last restore
    test against the RTO. Exits 1 if any database is unprotected."""
    settings = load_settings()
    with open_platform(settings) as platform, platform.sessions() as session:
        states = scheduling.protection(
            session, scheduling.all_scopes(session, platform.box, settings)
        )
    rows = [
        {
            "scope": s.scope,
            "protected": s.protected,
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
        emit_json(rows)
    else:
        table = Table(title="backup protection")
        for col in ("database", "protected", "newest good", "last attempt", "restore test", "RTO"):
            table.add_column(col)
        for row, s in zip(rows, states, strict=True):
            restore = "-" if row["last_restore_ms"] is None else f"{row['last_restore_ms']} ms"
            table.add_row(
                s.scope,
                "[green]yes[/]" if s.protected else "[red]NO[/]",
                when(s.last_good.started_at if s.last_good else None),
                s.last_attempt.status if s.last_attempt else "-",
                restore,
                f"{s.policy.rto_minutes} min"
                + ("" if s.rto_met is None else (" ✓" if s.rto_met else " ✗")),
            )
        console.print(table)
    if not all(s.protected for s in states):
        raise typer.Exit(EXIT_FAILED)


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
            actor="cli",
            action="backup.policy_set",
            target_type="backup_policy",
            target_id=scope,
            details=policy.document(),
        )
    if json_output:
        emit_json(policy.document())
    else:
        console.print(_policy_table(f"backup policy {policy.scope} (set)", [policy]))
