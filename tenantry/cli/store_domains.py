"""``tenantry stores domains``: the custom hosts a store is served on (add, list, verify,
remove). A host resolves to its store only once verified."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import EXIT_FAILED, JSON_OPTION, console, emit_json, reports_errors
from tenantry.db.master.models import StoreDomain
from tenantry.operations import domain_verify
from tenantry.services import domains, stores
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(
    help="Custom domains of a store: add, list, verify, remove.", no_args_is_help=True
)

SLUG_ARGUMENT = typer.Argument(..., help="The store's slug (or id).")
HOST_ARGUMENT = typer.Argument(..., help="The host name, e.g. shop.example.com.")


def _document(domain: StoreDomain) -> dict[str, Any]:
    return {
        "host": domain.host,
        "verified": domain.verified_at is not None,
        "verified_at": domain.verified_at.isoformat() if domain.verified_at else None,
        "token": domain.token,
        "how_to_verify": domain_verify.instructions(domain.host, domain.token),
    }


@app.command()
@reports_errors
def add(
    slug: str = SLUG_ARGUMENT, host: str = HOST_ARGUMENT, json_output: bool = JSON_OPTION
) -> None:
    """Claim HOST for the store and print the token that proves control of it."""
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        store = stores.get_store(session, slug)
        doc = _document(domains.add_domain(session, store, host, actor=cli_actor()))
    if json_output:
        emit_json(doc)
        return
    console.print(f"[green]✓[/] {doc['host']} claimed for {slug} (not verified yet)")
    typer.echo(doc["how_to_verify"])


@app.command("list")
@reports_errors
def list_(slug: str = SLUG_ARGUMENT, json_output: bool = JSON_OPTION) -> None:
    """The store's hosts, verified or not."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        docs = [
            _document(d) for d in domains.list_domains(session, stores.get_store(session, slug))
        ]
    if json_output:
        emit_json(docs)
        return
    table = Table("host", "verified", "token")
    for doc in docs:
        verified = when(doc["verified_at"]) if doc["verified"] else "[yellow]no[/]"
        table.add_row(doc["host"], verified, doc["token"])
    console.print(table)


@app.command()
@reports_errors
def verify(
    slug: str = SLUG_ARGUMENT, host: str = HOST_ARGUMENT, json_output: bool = JSON_OPTION
) -> None:
    """Look for HOST's published token (HTTP, then DNS TXT); exit 1 when it is not found."""
    with open_platform(load_settings()) as platform:
        found = domain_verify.verify(platform, slug, host, actor=cli_actor())
    if json_output:
        emit_json(
            {
                "host": found.host,
                "verified": found.verified,
                "method": found.method,
                "detail": found.detail,
            }
        )
    elif found.verified:
        console.print(f"[green]✓[/] {found.host} is verified ({found.detail})")
    else:
        console.print(f"[red]✗[/] {found.host} is not verified: {found.detail}")
    if not found.verified:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@reports_errors
def remove(
    slug: str = SLUG_ARGUMENT, host: str = HOST_ARGUMENT, json_output: bool = JSON_OPTION
) -> None:
    """Forget the store's claim on HOST; it stops resolving at once."""
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        domains.remove_domain(session, stores.get_store(session, slug), host, actor=cli_actor())
    if json_output:
        emit_json({"host": host, "removed": True})
    else:
        console.print(f"[green]✓[/] {host} removed from {slug}")
