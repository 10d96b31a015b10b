"""Entry point of the ``tenantry`` command."""

from __future__ import annotations

import typer

from tenantry.cli import db, init_cmd
from tenantry.version import __version__

app = typer.Typer(
    name="tenantry",
    help="Run a master database, a shared billing database and one database per tenant.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.command("init")(init_cmd.init)
app.add_typer(db.app, name="db")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tenantry {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """tenantry: master, billing and per-tenant databases, each knowing what it is."""


def main() -> None:
    """Run the CLI."""
    app()
