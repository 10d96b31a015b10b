"""The ``tenantry`` command line (Typer + Rich)."""
