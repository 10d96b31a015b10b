"""``tenantry metrics rules`` prints the packaged rules, ready for Prometheus."""

from __future__ import annotations

from importlib.resources import files

import yaml

from tests.cli.conftest import Invoke


def test_metrics_rules_prints_the_packaged_rules_file(cli: Invoke) -> None:
    result = cli("metrics", "rules")
    assert result.exit_code == 0, result.output
    packaged = files("tenantry.observability").joinpath("rules.yml").read_text(encoding="utf-8")
    assert result.stdout == packaged
    document = yaml.safe_load(result.stdout)
    alerts = {r["alert"] for g in document["groups"] for r in g["rules"] if "alert" in r}
    assert {"TenantryWebhookFailures", "TenantryBackupRPOMissed", "TenantryWorkerNotSeen"} <= alerts


def test_metrics_without_a_subcommand_lists_rules(cli: Invoke) -> None:
    result = cli("metrics")
    assert "rules" in result.output
