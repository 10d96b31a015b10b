"""``tenantry fleet``: migrate and check every tenant database."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tenantry.backup.storage import storage_for
from tenantry.cli.common import open_platform, when
from tenantry.cli.db import ALLOW_DESTRUCTIVE_OPTION, AS_APP_OPTION
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    err_console,
    print_error,
    reports_errors,
)
from tenantry.cli.waiting import DEFAULT_TIMEOUT_S, TIMEOUT_HELP, WorkerWatch
from tenantry.db import migrations
from tenantry.db.master.models import ACTIVE_STATUSES, FleetRun, TenantOutcome
from tenantry.operations.fleet_queue import start_queued_run
from tenantry.operations.fleet_record import RunReport
from tenantry.operations.fleet_run import run_fleet
from tenantry.operations.fleet_verify import verify_fleet
from tenantry.operations.premigration import PreMigrationBackups
from tenantry.runtime import Platform, open_dispatcher
from tenantry.services.audit import cli_actor
from tenantry.services.fleet_migrate import MigrateOptions, Outcome, TenantCheck, plan_sql
from tenantry.services.fleet_status import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    FleetStatus,
    check_page,
    fleet_status,
    run_progress,
)
from tenantry.services.fleet_targets import tenant_databases
from tenantry.settings import load_settings

#: How often --queue --wait reads the run's counters from master.
QUEUE_POLL_S = 0.5

app = typer.Typer(help="Migrate and check every tenant database.", no_args_is_help=True)


MIGRATION_COUNTS = "[green]{task.fields[migrated]} migrated[/] [red]{task.fields[failed]} failed[/]"


def _progress(show: bool, counts: str = MIGRATION_COUNTS) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(counts),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
        transient=False,
    )


@app.command()
@reports_errors
def migrate(
    to: str = typer.Option("head", "--to", help="Target revision (default: head)."),
    concurrency: int = typer.Option(
        4, "--concurrency", "-c", min=1, max=64, help="Tenant databases migrated at once."
    ),
    stores: list[str] = typer.Option(
        [], "--stores", help="Only these store slugs (repeat the option)."
    ),
    sql: bool = typer.Option(
        False, "--sql", help="Print the SQL each dialect would run; change nothing."
    ),
    allow_destructive: bool = ALLOW_DESTRUCTIVE_OPTION,
    as_app: str | None = AS_APP_OPTION,
    backup_first: bool = typer.Option(
        False,
        "--backup-first",
        help="Before migrating each tenant that has revisions to apply, take a backup, "
        "restore-test it and pin it; a tenant whose backup fails is not migrated.",
    ),
    queued: bool = typer.Option(
        False,
        "--queue",
        help="Enqueue one job per tenant for the workers (`tenantry worker`, on every "
        "machine sharing TENANTRY_QUEUE_URL) instead of migrating here.",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="With --queue: follow the run until the workers finish it."
    ),
    timeout: float | None = typer.Option(None, "--timeout", min=0, help=TIMEOUT_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Migrate every active tenant database to the newest (or given) revision.

    Each tenant is migrated on its own connection under its own lock; one failure never
    stops or skips another. Outcomes are recorded in master as they happen. Exits 1 if any
    tenant failed or was refused (they are named in the summary). Only one run at a time:
    a second one is refused while the first holds the fleet lock. The run is an operation:
    `tenantry ops cancel ID` stops it at the next tenant (those not started are untouched).
    """
    settings = load_settings()
    with open_platform(settings) as platform:
        spec = platform.tenant_spec
        goal = migrations.resolve(spec, to)
        if sql:
            with platform.sessions() as session:
                tenants = tenant_databases(session, platform.box, stores or None)
            plans, problems = plan_sql(tenants, spec, goal, concurrency=concurrency)
            if json_output:
                emit_json(
                    {
                        "target": goal,
                        "plans": [asdict(p) for p in plans],
                        "unreadable": [asdict(o) for o in problems],
                    }
                )
            else:
                if not plans:
                    console.print(f"every readable tenant is at {goal}; nothing would run")
                for plan in plans:
                    typer.echo(
                        f"-- {plan.dialect}: {len(plan.slugs)} tenant(s) from "
                        f"{plan.from_revision or 'base'} to {goal}: {', '.join(plan.slugs[:10])}"
                        + (" …" if len(plan.slugs) > 10 else "")
                    )
                    typer.echo(plan.sql)
                for o in problems:
                    print_error(f"{o.slug}: {o.error}", label="✗")
            if problems:
                raise typer.Exit(EXIT_FAILED)
            return
        options = MigrateOptions(
            goal=goal,
            acting_app=as_app or settings.app,
            owner=settings.tenant_owner,
            allow_destructive=allow_destructive,
            before_ddl=(
                PreMigrationBackups(
                    platform.sessions,
                    storage_for(settings),
                    settings,
                    platform.box,
                    actor=cli_actor(),
                ).for_tenants(spec, goal)
                if backup_first
                else None
            ),
        )
        if queued:
            _migrate_queued(platform, options, stores or None, wait, timeout, json_output)
            return
        with _progress(not json_output) as progress:
            task = progress.add_task(f"migrating to {goal}", total=None, migrated=0, failed=0)
            tally = {"migrated": 0, "failed": 0}

            def started(total: int) -> None:
                progress.update(task, total=total)

            def advanced(outcome: Outcome) -> None:
                if outcome.status == TenantOutcome.MIGRATED:
                    tally["migrated"] += 1
                elif outcome.status in (TenantOutcome.FAILED, TenantOutcome.REFUSED):
                    tally["failed"] += 1
                progress.update(task, advance=1, migrated=tally["migrated"], failed=tally["failed"])

            report = run_fleet(
                platform.sessions,
                platform.box,
                spec,
                options,
                concurrency=concurrency,
                slugs=stores or None,
                lock_ttl=timedelta(seconds=settings.job_lease_seconds),
                on_outcome=advanced,
                on_start=started,
                actor=cli_actor(),
            )
    if json_output:
        emit_json(_report_document(report))
    else:
        _print_report(report)
    if report.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)


def _report_document(report: RunReport) -> dict[str, Any]:
    return {
        "run_id": str(report.run_id),
        "status": report.status,
        "target": report.goal,
        "total": report.total,
        "counts": dict(report.counts),
        "seconds": round(report.seconds, 3),
        "took_over": str(report.took_over) if report.took_over else None,
        "lost_lock": report.lost_lock,
        "failures": [asdict(o) for o in report.failures],
        "outcomes": [asdict(o) for o in report.outcomes],
    }


def _print_report(report: RunReport) -> None:
    counts = report.counts
    # A line of its own, not the title: a narrow table would wrap the run id.
    console.print(f"fleet run {report.run_id} → {report.goal or 'base'}")
    table = Table()
    for col in ("outcome", "tenants"):
        table.add_column(col)
    for status in TenantOutcome:
        table.add_row(status.value, str(counts.get(status.value, 0)))
    table.add_row("total", str(report.total))
    console.print(table)
    if report.took_over:
        console.print(f"took over from run {report.took_over}, whose process had stopped")
    if report.failures:
        failed = Table(title="failed or refused tenants")
        for col in ("store", "status", "from", "error"):
            failed.add_column(col, overflow="fold")
        for o in sorted(report.failures, key=lambda o: o.slug):
            failed.add_row(o.slug, o.status.value, o.from_revision or "base", o.error or "")
        console.print(failed)
    if report.lost_lock:
        err_console.print("[red]the run lost its fleet lock and stopped starting tenants[/]")
    mark = "[green]✓[/]" if report.status == "succeeded" else "[red]✗[/]"
    console.print(f"{mark} {report.status} in {report.seconds:.2f} s")


@app.command()
@reports_errors
def status(
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Open every tenant database: real revision, drift from the models, changed scripts.",
    ),
    concurrency: int = typer.Option(
        4, "--concurrency", "-c", min=1, max=64, help="Databases checked at once (--verify)."
    ),
    limit: int = typer.Option(
        DEFAULT_LIMIT,
        "--limit",
        help=f"Lagging or failed stores listed per page (1 to {MAX_LIMIT}); counts are whole.",
    ),
    cursor: str | None = typer.Option(
        None, "--cursor", help="Start after this store: the next-page cursor a page printed."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Tenants per revision, lagging and failed tenants and the last run (from master).

    The counts are always whole; the stores not at head or whose last migration failed are
    listed a page at a time (--limit, in slug order); the next page's command is printed
    (JSON: next_cursor).

    With --verify every tenant database is opened and checked; exits 1 if any is not what
    the code expects.
    """
    check_page(limit, cursor)
    settings = load_settings()
    with open_platform(settings) as platform:
        checks: list[TenantCheck] | None = None
        if verify:
            counts = "[red]{task.fields[failed]} with problems[/]"
            with _progress(not json_output, counts) as progress:
                task = progress.add_task("verifying", total=None, failed=0)
                bad = [0]

                def checked(check: TenantCheck) -> None:
                    bad[0] += 0 if check.ok else 1
                    progress.update(task, advance=1, failed=bad[0])

                checks = verify_fleet(
                    platform.sessions,
                    platform.box,
                    platform.tenant_spec,
                    concurrency=concurrency,
                    on_check=checked,
                )
        with platform.sessions() as session:
            st = fleet_status(session, platform.tenant_spec, limit=limit, cursor=cursor)
    problems = [c for c in checks or [] if not c.ok]
    if json_output:
        doc: dict[str, Any] = asdict(st)
        if checks is not None:
            doc["verified"] = {"checked": len(checks), "problems": [asdict(c) for c in problems]}
        emit_json(doc)
    else:
        _print_status(st, checks, problems)
    if problems:
        raise typer.Exit(EXIT_FAILED)


def _print_status(
    st: FleetStatus,
    checks: list[TenantCheck] | None,
    problems: list[TenantCheck],
) -> None:
    console.print(f"{st.total} tenant database(s); this code's head revision is {st.head}")
    table = Table()
    table.add_column("revision")
    table.add_column("tenants", justify="right")
    for rev, n in sorted(st.per_revision.items()):
        shown = f"{rev} (head)" if rev == st.head else f"[yellow]{rev}[/]"
        table.add_row(shown, str(n))
    console.print(table)
    console.print(f"{st.lagging_total} lagging, {st.failed_total} failed")
    if st.lagging:
        console.print(f"[yellow]lagging (this page):[/] {', '.join(st.lagging)}")
    for f in st.failed:
        console.print(f"[red]✗ {f['slug']}[/] {f['status']} at {when(f['at'])}: {f['error']}")
    if st.next_cursor:
        console.print(
            f"more lagging or failed stores: tenantry fleet status --limit {st.limit} "
            f"--cursor {st.next_cursor}"
        )
    if st.last_run:
        r = st.last_run
        console.print(
            f"last run {r['id']}: {r['status']} → {r['target']}, {r['migrated']} migrated, "
            f"{r['current']} current, {r['failed']} failed of {r['total']} "
            f"(started {when(r['started_at'])}, finished {when(r['finished_at'])})"
        )
    else:
        console.print("no fleet run yet")
    if checks is not None:
        console.print(f"verified {len(checks)} tenant database(s): {len(problems)} with problems")
        for c in problems:
            console.print(f"[red]✗ {c.slug}[/] ({c.revision or '?'}): " + "; ".join(c.problems))


def _run_document(run: FleetRun) -> dict[str, Any]:
    return {
        "run_id": str(run.id),
        "status": run.status,
        "target": run.goal,
        "total": run.total,
        "counts": {"migrated": run.migrated, "current": run.current, "failed": run.failed},
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def _migrate_queued(
    platform: Platform,
    options: MigrateOptions,
    slugs: list[str] | None,
    wait: bool,
    timeout: float | None,
    json_output: bool,
) -> None:
    settings = platform.settings
    run_id, store_ids = start_queued_run(
        platform.sessions,
        platform.box,
        platform.tenant_spec,
        options,
        slugs=slugs,
        lock_ttl=timedelta(seconds=settings.job_lease_seconds),
        actor=cli_actor(),
    )
    queue = open_dispatcher(settings)
    try:
        queue.enqueue_fleet_tenants(run_id, store_ids)
    finally:
        queue.close()
    if not wait:
        with platform.sessions() as session:
            run = run_progress(session, run_id)
        if json_output:
            emit_json(_run_document(run))
        else:
            console.print(
                f"fleet run {run_id}: {len(store_ids)} tenant job(s) queued; follow it with "
                "`tenantry fleet status`"
            )
        return
    watch = WorkerWatch(
        platform.sessions,
        what=f"fleet run {run_id}",
        patient=timeout is not None,
        quiet=json_output,
    )
    timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
    deadline = time.monotonic() + timeout
    with _progress(not json_output) as progress:
        task = progress.add_task("workers migrating", total=len(store_ids), migrated=0, failed=0)
        while True:
            with platform.sessions() as session:
                run = run_progress(session, run_id)
            progress.update(
                task,
                completed=run.done,
                migrated=run.migrated,
                failed=run.failed,
            )
            if run.operation_status not in ACTIVE_STATUSES:
                break
            watch.check()
            if time.monotonic() >= deadline:
                err_console.print(
                    f"[yellow]stopped following run {run_id} after {timeout:.0f} s; it goes "
                    "on while workers run (`tenantry fleet status`)[/]"
                )
                break
            time.sleep(QUEUE_POLL_S)
    if json_output:
        emit_json(_run_document(run))
    else:
        console.print(
            f"fleet run {run_id}: {run.status}; {run.migrated} migrated, {run.current} current, "
            f"{run.failed} failed of {run.total} (details: `tenantry fleet status`)"
        )
    if run.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)
