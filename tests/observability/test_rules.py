"""The shipped Prometheus rules: valid for promtool, unit-tested on both sides of each threshold,
and reading only metrics tenantry exports (the catalog)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
RULES = ROOT / "tenantry" / "observability" / "rules.yml"
RULES_TESTS = HERE / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tenantry-dashboard.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
CATALOG = HERE / "catalog_names.txt"
#: A metric name as PromQL writes it; not part of a recording rule's ``level:metric:op`` name.
METRIC_NAME = re.compile(r"(?<![\w:])tenantry_[a-z0-9_]+(?![\w:])")
RECORDED_NAME = re.compile(r"\b[a-z_]+:tenantry_[a-z0-9_]+:[a-z0-9_]+\b")
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def _promtool() -> str:
    """promtool's path: a missing promtool skips locally and fails in CI."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian: apt-get install prometheus)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=HERE
    )


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _catalog() -> set[str]:
    return {line.strip() for line in CATALOG.read_text().splitlines() if line.strip()}


def _dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return [panel for panel in panels if panel.get("type") != "row"]


def _dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in _dashboard_panels() for target in panel["targets"]]


def test_promtool_accepts_the_rules() -> None:
    done = _run("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = _run("test", "rules", RULES_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_not_firing_at_each_severity() -> None:
    """A new rule (or a new severity of one) without promtool cases here fails the suite."""
    document = yaml.safe_load(RULES_TESTS.read_text())
    assert document["rule_files"] == ["../../tenantry/observability/rules.yml"]
    firing: set[tuple[str, str]] = set()
    quiet: set[tuple[str, str]] = set()
    for case in document["tests"]:
        for check in case.get("alert_rule_test", []):
            name = check["alertname"]
            fired = {alert["exp_labels"]["severity"] for alert in check.get("exp_alerts") or []}
            for alert in check.get("exp_alerts") or []:
                assert alert.get("exp_annotations"), f"{name}: a firing case names no annotations"
            for severity in ("warning", "critical"):
                (firing if severity in fired else quiet).add((name, severity))
    shipped = {(rule["alert"], rule["labels"]["severity"]) for rule in _alert_rules()}
    assert shipped - firing == set(), "alerts never tested firing"
    assert shipped - quiet == set(), "alerts never tested staying quiet"


def test_every_alert_says_how_bad_what_and_what_to_run() -> None:
    for rule in _alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "fix"} <= set(annotations), name
        assert "tenantry " in annotations["fix"], f"{name}: its fix names no tenantry command"
        text = annotations["summary"] + annotations["description"]
        assert "$value" in text or "$labels" in text, f"{name}: names no value or label"


def test_rules_and_dashboard_read_only_catalogued_metrics() -> None:
    catalog = _catalog()
    assert len(catalog) >= 30
    texts = {"rules.yml": RULES.read_text(), DASHBOARD.name: "\n".join(_dashboard_exprs())}
    for source, text in texts.items():
        for name in set(METRIC_NAME.findall(text)):
            base = next((name.removesuffix(s) for s in HISTOGRAM_SERIES if name.endswith(s)), name)
            assert name in catalog or base in catalog, f"{source} reads {name}, not in the catalog"


def test_the_dashboard_uses_only_recorded_series_the_rules_define() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    used = {name for expr in _dashboard_exprs() for name in RECORDED_NAME.findall(expr)}
    assert used, "the dashboard shows none of the alerts' ratios"
    assert used <= recorded


def test_the_dashboard_parses_and_every_panel_has_a_title_and_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    panels = _dashboard_panels()
    assert len(panels) >= 12
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel.get("title"), panel
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_the_example_prometheus_config_loads_the_rules_and_scrapes_with_a_key() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert any("tenantry-rules.yml" in f for f in config["rule_files"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["tenantry"]
    assert api["metrics_path"] == "/metrics"
    assert api["authorization"]["type"] == "Bearer"
    assert api["authorization"]["credentials_file"]
    assert "tenantry-worker" in jobs
    # The alerts' TenantryScrapeDown watches these jobs by name.
    assert all(re.fullmatch("tenantry.*", name) for name in jobs)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query (as a recording rule; Grafana's interval variable
    stands for a 5 min range)."""
    queries = [expr.replace("$__rate_interval", "5m") for expr in _dashboard_exprs()]
    records = [{"record": f"dashboard:query_{n}:check", "expr": e} for n, e in enumerate(queries)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    done = _run("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_wheel_carries_the_rules_file() -> None:
    """`tenantry metrics rules` reads the rules as package data: pyproject ships them."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "rules.yml" in data["package-data"]["tenantry.observability"]


def test_promtool_accepts_the_example_config_with_the_printed_rules(tmp_path: Path) -> None:
    """The README's steps: the rules saved beside the config, the key in its own file."""
    (tmp_path / "tenantry-rules.yml").write_text(RULES.read_text())
    (tmp_path / "tenantry-api-key").write_text("not-a-real-key\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.read_text().replace("/etc/prometheus/", f"{tmp_path}/"))
    done = _run("check", "config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout
