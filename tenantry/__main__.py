"""``python -m tenantry`` runs the CLI."""

from tenantry.cli.main import main

main()
