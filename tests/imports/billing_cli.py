"""A private ``tenantry``-like app with only ``import billing`` on it, for the tests (the
``import`` group itself is another module's): ``python -m tests.imports.billing_cli billing …``
runs it in a child process."""

from __future__ import annotations

import typer

from tenantry.cli.imports_billing import billing

app = typer.Typer()


@app.callback()
def _group() -> None:
    """Import data into tenantry."""


app.command("billing")(billing)

if __name__ == "__main__":
    app()
