"""The alert rules' current state, as the console's Health page shows it: each rule of
``rules.yml`` whose expression compares a gauge tenantry exports with a threshold is
evaluated now, on the same numbers a scrape would export (read by the metrics collector).

This is what Prometheus would see at this instant, not what it fires: a rule with ``for:``
fires only once its condition has held that long, and rules over rates or increases (webhook
failure rates, query latency, provisioning failures in 15 min, a scrape down) need
Prometheus's history: they are listed as not evaluated here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml
from prometheus_client.core import Metric

from tenantry.observability.collectors import PlatformCollector

#: The families of the collector the evaluated rules read.
FAMILIES = ("webhooks", "subscriptions", "disk", "backups", "fleet", "workers")
#: The threshold at the end of an expression: ``> 0.8``, ``== 1``.
_THRESHOLD = re.compile(r"(>|==)\s*([0-9.]+)\s*$")
#: Subscription statuses the failed-subscriptions ratio counts as failing.
FAILING_SUBSCRIPTIONS = ("past_due", "unpaid", "incomplete_expired")


@dataclass(frozen=True)
class Rule:
    """One alerting rule of ``rules.yml`` (a name may have a warning and a critical rule)."""

    name: str
    severity: str
    expr: str
    hold: str | None  # its ``for:``
    summary: str


@dataclass(frozen=True)
class AlertState:
    """A rule's state now: ``met`` (its condition holds), ``clear``, or ``not evaluated``,
    with what was measured (per label: a store scope, a disk, an app)."""

    rule: Rule
    state: str
    measured: str


@cache
def rules() -> tuple[Rule, ...]:
    """Every alerting rule shipped in ``rules.yml``, in its order."""
    text = resources.files("tenantry.observability").joinpath("rules.yml").read_text()
    found = []
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                found.append(
                    Rule(
                        rule["alert"],
                        rule["labels"]["severity"],
                        " ".join(rule["expr"].split()),
                        rule.get("for"),
                        rule["annotations"]["summary"],
                    )
                )
    return tuple(found)


Samples = dict[str, list[tuple[dict[str, str], float]]]


def _samples(metrics: list[Metric]) -> Samples:
    found: Samples = {}
    for family in metrics:
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return found


def _one(samples: Samples, name: str) -> list[tuple[str, float]]:
    return [("", v) for _, v in samples.get(name, [])]


def _disk(samples: Samples) -> list[tuple[str, float]]:
    sizes = {labels["location"]: v for labels, v in samples.get("tenantry_disk_size_bytes", [])}
    return [
        (labels["location"], 1 - free / sizes[labels["location"]])
        for labels, free in samples.get("tenantry_disk_free_bytes", [])
        if sizes.get(labels["location"])
    ]


def _failing_subscriptions(samples: Samples) -> list[tuple[str, float]]:
    live: dict[str, float] = {}
    failing: dict[str, float] = {}
    for labels, n in samples.get("tenantry_subscriptions", []):
        if labels["status"] != "canceled":
            live[labels["app"]] = live.get(labels["app"], 0) + n
        if labels["status"] in FAILING_SUBSCRIPTIONS:
            failing[labels["app"]] = failing.get(labels["app"], 0) + n
    return [(app, failing.get(app, 0) / n) for app, n in sorted(live.items()) if n > 0]


def _rpo(samples: Samples) -> list[tuple[str, float]]:
    """Per scope: how far past its maximum age the newest good backup is (> 0: missed)."""
    now = time.time()
    maxima = samples.get("tenantry_backup_max_age_seconds", [])
    limits = {labels["scope"]: v for labels, v in maxima}
    return [
        (labels["scope"], (now - last) - limits[labels["scope"]])
        for labels, last in samples.get("tenantry_backup_last_success_timestamp_seconds", [])
        if limits.get(labels["scope"], 0) > 0
    ]


def _restore_tests(samples: Samples) -> list[tuple[str, float]]:
    return [
        (labels["scope"], v)
        for labels, v in samples.get("tenantry_backup_last_restore_test_failed", [])
    ]


def _worker_silence(samples: Samples) -> list[tuple[str, float]]:
    seen = [v for _, v in samples.get("tenantry_worker_last_seen_timestamp_seconds", [])]
    return [("", time.time() - max(seen))] if seen else []


#: Each evaluated rule: what it measures, per label. The threshold is the expression's own.
MEASURES: dict[str, Callable[[Samples], list[tuple[str, float]]]] = {
    "TenantryWebhookBacklog": lambda s: _one(s, "tenantry_webhook_backlog_oldest_age_seconds"),
    "TenantryDiskFull": _disk,
    "TenantryFailedSubscriptions": _failing_subscriptions,
    "TenantryBackupRPOMissed": _rpo,
    "TenantryBackupTenantsOverdue": lambda s: _one(s, "tenantry_backup_tenants_overdue"),
    "TenantryRestoreTestFailing": _restore_tests,
    "TenantryFleetTenantsFailed": lambda s: _one(s, "tenantry_fleet_tenants_failed"),
    "TenantryFleetTenantsLagging": lambda s: _one(s, "tenantry_fleet_tenants_lagging"),
    "TenantryWorkerNotSeen": _worker_silence,
}


def _threshold(rule: Rule) -> tuple[str, float]:
    if rule.name == "TenantryBackupRPOMissed":
        return ">", 0.0  # measured as seconds past the policy's maximum age
    found = _THRESHOLD.search(rule.expr)
    if found is None:
        raise ValueError(f"rule {rule.name} has no threshold at the end of its expression")
    return found.group(1), float(found.group(2))


def _shown(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _rpo_words(seconds_past: float) -> str:
    hours = abs(seconds_past) / 3600
    return f"{hours:.1f} h {'past' if seconds_past > 0 else 'within'} its maximum age"


#: How a measured value reads, where a bare number would not say enough.
FORMATS: dict[str, Callable[[float], str]] = {
    "TenantryWebhookBacklog": lambda v: f"oldest waiting {v:.0f} s",
    "TenantryDiskFull": lambda v: f"{100 * v:.1f} % used",
    "TenantryFailedSubscriptions": lambda v: f"{100 * v:.1f} % failing",
    "TenantryBackupRPOMissed": _rpo_words,
    "TenantryRestoreTestFailing": lambda v: "newest test failed" if v == 1 else "ok",
    "TenantryWorkerNotSeen": lambda v: f"last heartbeat {v:.0f} s ago",
}


def evaluate(metrics: list[Metric]) -> list[AlertState]:
    """Every rule's state on ``metrics`` (the collector's :data:`FAMILIES`)."""
    samples = _samples(metrics)
    states = []
    for rule in rules():
        measure = MEASURES.get(rule.name)
        if measure is None:
            states.append(AlertState(rule, "not evaluated", "needs Prometheus's history"))
            continue
        op, limit = _threshold(rule)
        values = measure(samples)
        met = [(label, v) for label, v in values if (v > limit if op == ">" else v == limit)]
        shown: list[tuple[str, float]] = met or values
        words = FORMATS.get(rule.name, _shown)
        measured = ", ".join(f"{label}: {words(v)}" if label else words(v) for label, v in shown)
        states.append(AlertState(rule, "met" if met else "clear", measured or "no data"))
    return states


def alert_states(collector: PlatformCollector) -> list[AlertState]:
    """Every rule's state now, read through ``collector``."""
    return evaluate(collector.read(FAMILIES))
