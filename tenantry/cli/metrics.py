"""``tenantry metrics``: what Prometheus needs from tenantry besides ``/metrics`` itself."""

from __future__ import annotations

from importlib.resources import files

import typer

app = typer.Typer(
    help="Prometheus alert rules for tenantry's metrics (seed 004's thresholds).",
    no_args_is_help=True,
)

#: The packaged rules file, beside the code that exports the metrics it reads.
RULES_RESOURCE = ("tenantry.observability", "rules.yml")


def rules_text() -> str:
    """The packaged Prometheus rules file, as shipped."""
    package, name = RULES_RESOURCE
    return files(package).joinpath(name).read_text(encoding="utf-8")


@app.command()
def rules() -> None:
    """Print the Prometheus recording and alert rules (YAML) to stdout.

    Save them and list the file under `rule_files:` in prometheus.yml:
    `tenantry metrics rules > /etc/prometheus/tenantry-rules.yml`, then
    `promtool check rules /etc/prometheus/tenantry-rules.yml`. Each alert names its
    threshold, its severity and the tenantry command that fixes it; the README's
    "Monitoring" section lists them.
    """
    typer.echo(rules_text(), nl=False)
