"""The alert rules' current state the Health page shows: every rule of rules.yml is either
evaluated on the gauges a scrape exports (its own threshold read from its expression) or
named as needing Prometheus; a value past a threshold meets the condition, below it is clear."""

from __future__ import annotations

import time

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from tenantry.observability import alert_states
from tenantry.observability.alert_states import MEASURES, evaluate, rules


def _gauge(name: str, value: float, **labels: str) -> Metric:
    family = GaugeMetricFamily(name, name, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def test_every_rule_is_evaluated_or_named_as_needing_prometheus() -> None:
    names = {r.name for r in rules()}
    assert set(MEASURES) <= names  # no evaluator for a rule that does not exist
    assert {"TenantryWebhookFailures", "TenantryQueryLatency", "TenantryScrapeDown"} <= (
        names - set(MEASURES)
    )
    states = {(s.rule.name, s.rule.severity): s for s in evaluate([])}
    assert states[("TenantryQueryLatency", "critical")].state == "not evaluated"
    assert states[("TenantryFleetTenantsFailed", "critical")].measured == "no data"


def test_thresholds_are_the_rules_own() -> None:
    now = time.time()
    metrics = [
        _gauge("tenantry_disk_free_bytes", 15, location="data_dir"),
        _gauge("tenantry_disk_size_bytes", 100, location="data_dir"),  # 85 % used
        _gauge("tenantry_fleet_tenants_failed", 2),
        _gauge("tenantry_fleet_tenants_lagging", 0),
        _gauge("tenantry_backup_last_success_timestamp_seconds", now - 13 * 3600, scope="billing"),
        _gauge("tenantry_backup_max_age_seconds", 12 * 3600, scope="billing"),
        _gauge("tenantry_backup_last_restore_test_failed", 1, scope="tenant"),
        _gauge("tenantry_worker_last_seen_timestamp_seconds", now - 5),
        _gauge("tenantry_webhook_backlog_oldest_age_seconds", 1000),
    ]
    states = {(s.rule.name, s.rule.severity): s for s in evaluate(metrics)}
    # 85 % is past the warning's 80 %, not the critical 90 %.
    assert states[("TenantryDiskFull", "warning")].state == "met"
    assert states[("TenantryDiskFull", "critical")].state == "clear"
    assert states[("TenantryDiskFull", "warning")].measured == "data_dir: 85.0 % used"
    assert states[("TenantryFleetTenantsFailed", "critical")].state == "met"
    assert states[("TenantryFleetTenantsLagging", "warning")].state == "clear"
    rpo = states[("TenantryBackupRPOMissed", "critical")]
    assert rpo.state == "met"
    assert rpo.measured == "billing: 1.0 h past its maximum age"
    assert states[("TenantryRestoreTestFailing", "critical")].state == "met"
    assert states[("TenantryWorkerNotSeen", "critical")].state == "clear"
    # A backlog of 1,000 s: past the warning's 900 s, not the critical 3,600 s.
    assert states[("TenantryWebhookBacklog", "warning")].state == "met"
    assert states[("TenantryWebhookBacklog", "critical")].state == "clear"


def test_a_rule_without_a_threshold_is_refused_not_guessed() -> None:
    odd = alert_states.Rule("X", "warning", "up == bananas", None, "")
    with pytest.raises(ValueError, match="no threshold"):
        alert_states._threshold(odd)
