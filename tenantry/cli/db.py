"""``tenantry db``: status, migrate, check, adopt, schema and history of one database."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from tenantry.cli.common import open_platform
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    err_console,
    print_error,
    reports_errors,
)
from tenantry.db import migrations
from tenantry.db.configured import Target, connection, target
from tenantry.db.ddl import create_statements
from tenantry.db.engines import sqlite_path
from tenantry.db.lint import lint_pending
from tenantry.db.schemas import Role, schema_for
from tenantry.errors import InvalidInput, TenantryError
from tenantry.operations import migrate_database
from tenantry.services import schema_ops
from tenantry.services.audit import cli_actor
from tenantry.services.fleet_targets import tenant_databases
from tenantry.settings import Settings, load_settings

app = typer.Typer(
    help="Inspect and migrate one database (master, billing or a tenant).", no_args_is_help=True
)

ROLE_OPTION = typer.Option(..., "--role", "-r", help="master, billing or tenant.")
URL_OPTION = typer.Option(
    None, "--url", help="Act on this database instead of the role's configured one."
)
ALLOW_DESTRUCTIVE_OPTION = typer.Option(
    False, "--allow-destructive", help="Run revisions that drop or narrow something."
)
AS_APP_OPTION = typer.Option(
    None, "--as-app", help="The app running the command (default: TENANTRY_APP or 'tenantry')."
)
BACKUP_FIRST_OPTION = typer.Option(
    None,
    "--backup-first/--no-backup-first",
    help="Take and verify a pinned backup before any DDL (default: on for billing).",
)


def _status_document(settings: Settings, t: Target) -> dict[str, Any]:
    path = sqlite_path(t.url)
    doc: dict[str, Any] = {
        "url": t.shown,
        "role": None,
        "current": None,
        "head": migrations.head(t.spec),
        "pending": None,
    }
    if path is not None and not path.is_file():
        doc["pending"] = len(migrations.between(t.spec, None, doc["head"]))
        doc["exists"] = False
        return doc
    try:
        with connection(t) as conn:
            st = schema_ops.status(conn, t.spec, t.shown)
    except TenantryError as exc:
        doc["error"] = exc.message
        return doc
    doc.update(
        role=st.identity.role if st.identity else None,
        current=st.current,
        pending=st.pending,
        exists=True,
        schema=st.identity.schema_name if st.identity else None,
        instance_id=st.identity.instance_id if st.identity else None,
        owner_app=st.identity.owner_app if st.identity else None,
    )
    return doc


@app.command()
@reports_errors
def status(json_output: bool = JSON_OPTION) -> None:
    """Show master and billing: URL, identity role, revision and pending migrations."""
    settings = load_settings()
    docs = {
        r.value: _status_document(settings, target(settings, r))
        for r in (Role.MASTER, Role.BILLING)
    }
    failed = any("error" in d for d in docs.values())
    if json_output:
        emit_json(docs)
    else:
        table = Table(title="tenantry databases")
        for col in ("role", "url", "identity", "current", "head", "pending"):
            table.add_column(col, overflow="fold")
        for name, d in docs.items():
            if "error" in d:
                identity = "[red]unreachable[/]"
            elif d.get("exists") is False:
                identity = "[yellow]not created[/]"
            else:
                identity = d["role"] or "[yellow]none[/]"
            pending = str(d["pending"]) if d["pending"] is not None else "?"
            table.add_row(
                name,
                d["url"],
                identity,
                d["current"] or "-",
                d["head"] or "-",
                f"[yellow]{pending}[/]" if d["pending"] else pending,
            )
        console.print(table)
        for name, d in docs.items():
            if "error" in d:
                print_error(f"{name}: {d['error']}")
            elif d.get("exists") is False:
                console.print(f"{name} database does not exist yet: run `tenantry init`.")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@reports_errors
def migrate(
    role: Role = ROLE_OPTION,
    to: str = typer.Option("head", "--to", help="Target revision (default: head)."),
    sql: bool = typer.Option(False, "--sql", help="Print the SQL that would run; change nothing."),
    url: str | None = URL_OPTION,
    as_app: str | None = AS_APP_OPTION,
    allow_destructive: bool = ALLOW_DESTRUCTIVE_OPTION,
    lock_wait: float = typer.Option(
        30.0, "--lock-wait", min=0, help="Seconds to wait for another migration's lock."
    ),
    backup_first: bool | None = BACKUP_FIRST_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Upgrade a database to the newest (or given) revision after checking its identity.

    A database of another role, a non-empty database without identity, a consumer app
    (--as-app) or a destructive revision (without --allow-destructive) is refused and left
    untouched. The migration holds the database's lock, so two cannot run at once, and
    records each applied script's checksum. With --backup-first (the default for billing)
    a verified, pinned backup is taken before any DDL; if it fails, nothing is migrated.
    """
    settings = load_settings()
    t = target(settings, role, url)
    app_name = as_app or settings.app
    owner = settings.owner_of(role)
    if sql:
        with connection(t) as conn:
            script = schema_ops.migration_sql(
                conn, t.spec, t.url, target=to, acting_app=app_name, owner=owner
            )
        if json_output:
            emit_json({"role": role.value, "url": t.shown, "sql": script})
        else:
            typer.echo(script, nl=False)
        return
    shown = err_console.status(f"backing up the {role} database before migrating")
    migrated = migrate_database.migrate(
        settings,
        t,
        to=to,
        acting_app=app_name,
        owner=owner,
        allow_destructive=allow_destructive,
        lock_wait_s=lock_wait,
        actor=cli_actor(),
        backup_first=backup_first,
        while_backing_up=None if json_output else shown,
    )
    result, pre_backup = migrated.result, migrated.backup_id
    if json_output:
        emit_json({**asdict(result), "backup": str(pre_backup) if pre_backup else None})
        return
    if pre_backup:
        console.print(f"[green]✓[/] pre-migration backup {pre_backup} taken and verified")
    if result.stamped_identity:
        console.print(
            f"[green]✓[/] stamped {role} identity on {t.shown} "
            f"(instance {result.stamped_identity.instance_id})"
        )
    if result.applied:
        console.print(
            f"[green]✓[/] {role} migrated {result.from_revision or 'base'} → "
            f"{result.to_revision} ({', '.join(result.applied)})"
        )
    else:
        console.print(
            f"[green]✓[/] {role} already at {result.to_revision or 'base'}; nothing to apply"
        )


@app.command()
@reports_errors
def check(
    role: Role = ROLE_OPTION,
    url: str | None = URL_OPTION,
    as_app: str | None = AS_APP_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Exit 0 when the database is at the revision this code expects and matches its models.

    Consumer apps run this at start-up to fail fast; it never changes anything.
    """
    settings = load_settings()
    t = target(settings, role, url)
    with connection(t) as conn:
        result = schema_ops.check(conn, t.spec, t.shown)
    if json_output:
        emit_json({**asdict(result), "app": as_app or settings.app})
    elif result.ok:
        console.print(
            f"[green]✓[/] {role} database {t.shown} is at {result.head} and matches the models"
        )
    else:
        console.print(f"[red]✗[/] {role} database {t.shown} is not what the code expects:")
        for problem in result.problems:
            console.print(f"  - {problem}")
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@reports_errors
def adopt(
    role: Role = ROLE_OPTION,
    url: str | None = URL_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Stamp identity on an existing database whose tables already match the role's models."""
    settings = load_settings()
    t = target(settings, role, url)
    with connection(t, begin=True) as conn:
        result = schema_ops.adopt(conn, t.spec, t.shown, owner=settings.owner_of(role))
    if json_output:
        emit_json(result)
    elif result.adopted:
        console.print(
            f"[green]✓[/] adopted {t.shown} as a {role} database "
            f"(instance {result.identity.instance_id})"
        )
    else:
        console.print(f"[green]✓[/] {t.shown} is already a {role} database; nothing changed")


@app.command()
@reports_errors
def schema(
    role: Role = ROLE_OPTION,
    dialect: str = typer.Option(..., "--dialect", "-d", help="sqlite, postgresql or mysql."),
) -> None:
    """Print the CREATE statements of a role's schema for one dialect."""
    settings = load_settings()
    spec = schema_for(role, settings.tenant_schema)
    for statement in create_statements(spec.metadata, dialect):
        typer.echo(statement + ";\n")


@app.command()
@reports_errors
def history(role: Role = ROLE_OPTION, json_output: bool = JSON_OPTION) -> None:
    """List a role's revisions, oldest first."""
    settings = load_settings()
    spec = schema_for(role, settings.tenant_schema)
    revs = migrations.between(spec, None, migrations.head(spec))
    if json_output:
        emit_json(
            [
                {"revision": s.revision, "down_revision": s.down_revision, "message": s.doc}
                for s in revs
            ]
        )
        return
    for s in revs:
        console.print(f"{s.revision}  {s.doc}")


@app.command()
@reports_errors
def lint(
    role: Role = ROLE_OPTION,
    url: str | None = URL_OPTION,
    all_revisions: bool = typer.Option(
        False, "--all", help="Lint every revision, not only those pending on the database."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Report destructive changes (dropped tables or columns, narrowed types, NOT NULL
    without a default, renames) in the revisions pending on a database.

    Exits 1 when a pending revision is destructive: `db migrate` and `fleet migrate` refuse
    it unless --allow-destructive. For the tenant role pass --url, or --all.
    """
    settings = load_settings()
    spec = schema_for(role, settings.tenant_schema)
    head = migrations.head(spec)
    if all_revisions or (role is Role.TENANT and url is None):
        if not all_revisions:
            console.print("[dim]no tenant database given: linting every revision[/]")
        start = None
    else:
        t = target(settings, role, url)
        with connection(t) as conn:
            start = migrations.current(conn, t.spec)
    findings = lint_pending(spec, start, head)
    if json_output:
        emit_json({"role": role.value, "from": start, "to": head, "findings": findings})
    elif not findings:
        console.print(f"[green]✓[/] {role}: nothing destructive from {start or 'base'} to {head}")
    else:
        table = Table(title=f"{role} revisions {start or 'base'} → {head}")
        for col in ("revision", "operation", "destructive", "detail"):
            table.add_column(col, overflow="fold")
        for f in findings:
            table.add_row(
                f.revision, f.operation, "[red]yes[/]" if f.destructive else "no", f.detail
            )
        console.print(table)
    if any(f.destructive for f in findings):
        raise typer.Exit(EXIT_FAILED)


@app.command()
@reports_errors
def resolve(
    revision: str = typer.Argument(..., help="The revision that failed."),
    applied: bool = typer.Option(
        False, "--applied", help="Its changes were completed by hand: mark it applied."
    ),
    rolled_back: bool = typer.Option(
        False, "--rolled-back", help="Its changes were undone by hand: mark it not applied."
    ),
    role: Role | None = typer.Option(None, "--role", "-r", help="master or billing."),
    store: str | None = typer.Option(None, "--store", help="A store's tenant database."),
    url: str | None = URL_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Record the state of a migration that failed, after fixing it by hand (seed 004
    runbook). Changes only tenantry's version and checksum rows; written to the audit log.
    """
    if applied == rolled_back:
        raise InvalidInput(
            "say what happened to the revision.", "Pass exactly one of --applied or --rolled-back."
        )
    if (role is None) == (store is None):
        raise InvalidInput("say which database.", "Pass exactly one of --role R or --store SLUG.")
    settings = load_settings()
    if store is not None:
        with open_platform(settings) as platform, platform.sessions() as session:
            db = tenant_databases(session, platform.box, [store])[0]
        t = Target(platform.tenant_spec, db.url)
        store_id: uuid.UUID | None = db.store_id
    else:
        assert role is not None
        t = target(settings, role, url)
        store_id = None
    result = migrate_database.resolve(
        settings, t, revision, applied=applied, actor=cli_actor(), store_id=store_id
    )
    if json_output:
        emit_json(result)
    else:
        console.print(
            f"[green]✓[/] {result.role} {t.shown}: revision {result.revision} marked "
            f"{result.marked}; version {result.before or 'base'} → {result.after or 'base'}"
        )
