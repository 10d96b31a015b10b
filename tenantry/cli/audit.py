"""``tenantry audit``: read the audit log (master's and billing's as one), export it as JSON
lines, and apply its retention policy."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, err_console, reports_errors
from tenantry.errors import InvalidInput
from tenantry.operations import audit_prune
from tenantry.runtime import Platform
from tenantry.services import audit_query
from tenantry.services.audit import Outcome, cli_actor
from tenantry.settings import load_settings

app = typer.Typer(
    help="Read, export and prune the audit log (who did what, to what, and how it ended).",
    no_args_is_help=True,
)

SINCE = typer.Option(None, "--since", help="From this time: 7d, 12h, 30m ago, or an ISO date.")
UNTIL = typer.Option(None, "--until", help="Before this time: 7d, 12h ago, or an ISO date.")
ACTOR = typer.Option(
    None, "--actor", help="cli, key, user, worker, scheduler, or one actor (cli:alice, key:tk_…)."
)
ACTION = typer.Option(None, "--action", help="One action (store.suspend) or a family (store.*).")
STORE = typer.Option(None, "--store", help="Entries about this store (slug or id).")
OUTCOME = typer.Option(None, "--outcome", help="succeeded, failed or refused.")


def _filter(
    platform: Platform,
    since: str | None,
    until: str | None,
    actor: str | None,
    action: str | None,
    store: str | None,
    outcome: str | None,
) -> audit_query.AuditFilter:
    """The filter the options describe (InvalidInput naming the bad one)."""
    store_id, slug = None, None
    if store is not None:
        with platform.sessions() as session:
            store_id, slug = audit_query.store_filter(session, store)
    chosen: Outcome | None = None
    if outcome is not None:
        try:
            chosen = Outcome(outcome)
        except ValueError:
            raise InvalidInput(
                f"--outcome {outcome!r} is not an outcome.", "Use succeeded, failed or refused."
            ) from None
    return audit_query.AuditFilter(
        since=audit_query.parse_when(since, option="--since") if since else None,
        until=audit_query.parse_when(until, option="--until") if until else None,
        actor=actor or None,
        action=action or None,
        store_id=store_id,
        store_slug=slug,
        outcome=chosen,
    )


@contextmanager
def _logs(platform: Platform) -> Iterator[tuple[Session, Session]]:
    """Sessions on master's log and billing's."""
    with platform.sessions() as master, platform.billing_sessions() as billing:
        yield master, billing


@app.command("list")
@reports_errors
def list_(
    since: str | None = SINCE,
    until: str | None = UNTIL,
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    store: str | None = STORE,
    outcome: str | None = OUTCOME,
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="At most this many."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Audit entries, newest first: when, who, what, target, outcome."""
    with open_platform(load_settings()) as platform:
        flt = _filter(platform, since, until, actor, action, store, outcome)
        with _logs(platform) as (master, billing):
            docs = [
                audit_query.document(e)
                for e in audit_query.entries(master, billing, flt, limit=limit)
            ]
    if json_output:
        emit_json(docs)
        return
    if not docs:
        console.print("no audit entries match.")
        return
    table = Table(title=f"audit log (newest first, {len(docs)} shown)")
    for col in ("when", "actor", "action", "target", "outcome", "details"):
        table.add_column(col, overflow="fold")
    colour = {"succeeded": "green", "failed": "red", "refused": "yellow"}
    for d in docs:
        target = d["target_type"] + (f" {d['target_id']}" if d["target_id"] else "")
        table.add_row(
            d["created_at"][:19].replace("T", " "),
            escape(d["actor"]),
            escape(d["action"]),
            escape(target),
            f"[{colour.get(d['outcome'], 'white')}]{d['outcome']}[/]",
            escape(json.dumps(d["details"], default=str)[:120]),
        )
    console.print(table)


@app.command()
@reports_errors
def export(
    since: str = typer.Option(..., "--since", help="From this time: 30d ago or an ISO date."),
    until: str | None = UNTIL,
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    store: str | None = STORE,
    out: Path | None = typer.Option(
        None, "--out", help="Write to this file (made private, 0600); stdout when absent."
    ),
) -> None:
    """Export entries as JSON lines (one entry a line, newest first), streamed."""
    with open_platform(load_settings()) as platform:
        flt = _filter(platform, since, until, actor, action, store, None)
        if out is None:
            count = _write(platform, flt, sys.stdout)
        else:
            if out.is_dir():
                raise InvalidInput(f"--out {out} is a directory.", "Give a file name.")
            with out.open("w", encoding="utf-8") as handle:
                count = _write(platform, flt, handle)
            err_console.print(f"[green]✓[/] wrote {count} entries to {out}")


def _write(platform: Platform, flt: audit_query.AuditFilter, handle: IO[str]) -> int:
    count = 0
    with _logs(platform) as (master, billing):
        for entry in audit_query.entries(master, billing, flt):
            handle.write(json.dumps(audit_query.document(entry), default=str) + "\n")
            count += 1
    handle.flush()
    return count


@app.command()
@reports_errors
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Delete audit entries older than TENANTRY_AUDIT_RETENTION_DAYS (default 400) and API
    usage rows older than TENANTRY_USAGE_RETENTION_DAYS (default 90). The scheduler runs it
    too."""
    settings = load_settings()
    with open_platform(settings) as platform:
        report = audit_prune.prune(
            platform.writer_sessions,
            platform.billing_writer_sessions,
            settings,
            actor=cli_actor(),
            dry_run=dry_run,
        )
    doc = {
        "dry_run": report.dry_run,
        "audit_cutoff": report.audit_cutoff,
        "usage_cutoff": report.usage_cutoff,
        "audit_logs": report.audit_logs,
        "billing_audit_logs": report.billing_audit_logs,
        "api_usage_logs": report.api_usage_logs,
    }
    if json_output:
        emit_json(doc)
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(
        f"{verb} {report.audit_logs + report.billing_audit_logs} audit entries (before "
        f"{report.audit_cutoff:%Y-%m-%d}) and {report.api_usage_logs} usage rows (before "
        f"{report.usage_cutoff:%Y-%m-%d})"
    )
