"""A real Prometheus scrapes `tenantry up` with the shipped rules after a scripted day: stores
provisioned, webhooks good, failing and forged, a backup, a restore test that fails. The
expected series are there with plausible values, and the alerts the script provoked (and
only those) evaluate true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantry.runtime import Platform
from tenantry.services import apikeys
from tenantry.services.billing import webhook_secrets
from tenantry.settings import load_settings
from tests.conftest import DbFactory
from tests.helpers import free_port, stop_process, wait_until_healthy
from tests.platform_fixtures import ENV_VARS, install
from tests.scratch_cleanup import scratch_dropped_after
from tests.stripe_events import signed, subscription_created

SECRET = "whsec_live_" + "p" * 16
PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None and os.environ.get("CI") != "true":  # CI installs it (.ci/run)
    pytest.skip("prometheus is not installed (apt-get install prometheus)", allow_module_level=True)


def _subscription(customer: str, subscription: str, plan: str = "pro") -> dict[str, Any]:
    return subscription_created(
        customer, subscription=subscription, customer=f"cus_{subscription}", plan_code=plan
    )


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            yield proc
        finally:
            stop_process(proc)


class Prometheus:
    """Prometheus's HTTP API."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.http.get("/api/v1/query", params={"query": expr}).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float | None:
        found = self.query(expr)
        return float(found[0]["value"][1]) if found else None

    def alerts(self) -> dict[tuple[str, str], str]:
        """(alert name, severity) -> state (pending or firing)."""
        found = self.http.get("/api/v1/alerts").json()["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"]["severity"]): a["state"] for a in found}

    def rules_healthy(self) -> list[str]:
        groups = self.http.get("/api/v1/rules").json()["data"]["groups"]
        return [r["name"] for g in groups for r in g["rules"] if r["health"] != "ok"]

    def wait_for(self, expr: str, seconds: float = 60) -> float:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = self.value(expr)
            if found is not None:
                return found
            time.sleep(0.5)
        raise AssertionError(f"{expr} had no value within {seconds} s")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_prometheus_scrapes_tenantry_up_and_the_rules_fire_where_the_day_went_wrong(
    backend: str, new_database: DbFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert PROMETHEUS is not None, "CI must install prometheus (.ci/run)"
    # Master on the embedded SQLite, billing on PostgreSQL: the server refuses a value a
    # webhook carries (a plan code longer than its column), so those events fail to apply.
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    billing_url = new_database("billing", create=False)
    monkeypatch.setenv("DATABASE_URL_BILLING", billing_url.render_as_string(hide_password=False))
    settings = load_settings()
    install(settings)
    platform = Platform.open(settings)
    with platform.sessions.begin() as session:
        admin = apikeys.create_key(session, name="admin", scope=apikeys.Scope.ADMIN, actor="t")
        reader = apikeys.create_key(
            session, name="prometheus", scope=apikeys.Scope.ADMIN, read_only=True, actor="t"
        )
        app = apikeys.create_key(
            session, name="acme", scope=apikeys.Scope.APP, app_id="acme", actor="t"
        )
    with platform.billing_sessions.begin() as session:
        webhook_secrets.add_secret(session, platform.box, "acme", "stripe", SECRET, actor="t")
    platform.close()

    api_port, prom_port = free_port(), free_port()
    api_base = f"http://127.0.0.1:{api_port}"
    key_file = tmp_path / "prometheus.key"
    key_file.write_text(reader.plaintext)
    rules = tmp_path / "rules.yml"
    rules.write_text(resources.files("tenantry.observability").joinpath("rules.yml").read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{rules}]\n"
        "scrape_configs:\n"
        "  - job_name: tenantry\n"
        f"    authorization: {{type: Bearer, credentials_file: {key_file}}}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n"
    )
    up = [sys.executable, "-m", "tenantry", "up", "--port", str(api_port), "--no-access-log"]
    prometheus = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    with (
        scratch_dropped_after(settings),  # the scheduler may be restore-testing billing
        _process(up, tmp_path / "up.log") as server,
        _process(prometheus, tmp_path / "prometheus.log"),
        httpx.Client(base_url=api_base, timeout=30) as http,
    ):
        wait_until_healthy(api_base, server, tmp_path / "up.log", seconds=60)
        prom = Prometheus(f"http://127.0.0.1:{prom_port}")
        # Scraped before the day starts: every counter's rise falls inside the rate windows.
        prom.wait_for('up{job="tenantry"} == 1')
        prom.wait_for("tenantry_webhooks_processed_total")
        h = {"Authorization": f"Bearer {admin.plaintext}"}

        for slug in ("north", "south"):
            made = http.post("/stores", headers=h, json={"name": slug.title(), "slug": slug})
            assert made.status_code == 201, made.text
            job = http.post(f"/stores/{slug}/provision", headers=h, json={})
            assert job.status_code == 202, job.text

        acme = {"Authorization": f"Bearer {app.plaintext}"}
        for customer in ("cust-1", "cust-2"):
            made = http.post(
                "/billing/customers", headers=acme, json={"external_customer_id": customer}
            )
            assert made.status_code == 201, made.text
        good = [_subscription("cust-1", "sub_a"), _subscription("cust-2", "sub_b")]
        failing = [_subscription("cust-1", f"sub_long_{i}", "p" * 100) for i in range(3)]
        for event in good + failing:
            body, headers = signed(event, SECRET)
            assert http.post("/webhooks/stripe/acme", content=body, headers=headers).is_success
        for event in good:  # forged: signed with another secret
            body, headers = signed(event, "whsec_forged_" + "x" * 16)
            forged = http.post("/webhooks/stripe/acme", content=body, headers=headers)
            assert forged.status_code in (400, 401), forged.text

        backup = http.post("/backups", headers=h, json={"db": "master"})
        assert backup.status_code == 202, backup.text
        backup_id = backup.json()["id"]
        deadline = time.monotonic() + 60
        # Stored, or already past it: `tenantry up`'s scheduler may verify it at once.
        settled = ("stored", "verified")
        while (shown := http.get(f"/backups/{backup_id}", headers=h).json())[
            "status"
        ] not in settled and time.monotonic() < deadline:
            time.sleep(0.3)
        assert shown["status"] in settled, shown
        Path(shown["location"].removeprefix("file://")).write_bytes(b"not a backup")
        verify = subprocess.run(
            [sys.executable, "-m", "tenantry", "backup", "verify", backup_id],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=120,
        )
        assert verify.returncode == 1, verify.stdout + verify.stderr

        # What the day left, as Prometheus sees it.
        assert prom.wait_for('tenantry_tenant_databases{status="active"} == 2') == 2
        assert (
            prom.wait_for('tenantry_operations_total{kind="provision",status="succeeded"} == 2')
            == 2
        )
        assert prom.wait_for('tenantry_webhooks_processed_total{status="failed"} >= 3') >= 3
        assert prom.value('sum(tenantry_webhooks_processed_total{status="processed"})') == 2
        assert (
            prom.value(
                'tenantry_webhooks_received_total{app="acme",event_type="customer.subscription.created"}'
            )
            == 5
        )
        assert prom.value('tenantry_webhooks_rejected_total{reason="signature"}') == 2
        assert prom.value('tenantry_subscriptions{app="acme",status="active"}') == 2
        assert prom.wait_for('tenantry_backup_last_restore_test_failed{scope="master"} == 1') == 1
        assert prom.value("tenantry_workers_alive") == 1
        provision = 'route="/stores/{store_ref}/provision"'
        requests = prom.value(f"sum(tenantry_http_requests_total{{{provision}}})")
        assert requests is not None
        assert requests >= 2
        assert (prom.value('tenantry_database_size_bytes{database="billing"}') or 0) > 0
        assert (prom.value('tenantry_db_query_duration_seconds_count{role="billing"}') or 0) > 0

        # The rules evaluate, and those the script provoked are active (pending: their `for:`
        # runs; firing: it has run). 3 failures in 5 attempts is over both webhook thresholds.
        deadline = time.monotonic() + 60
        wanted = {
            ("TenantryRestoreTestFailing", "critical"),
            ("TenantryWebhookFailures", "warning"),
            ("TenantryWebhookFailures", "critical"),
        }
        while not wanted <= set(prom.alerts()) and time.monotonic() < deadline:
            time.sleep(1)
        active = prom.alerts()
        assert wanted <= set(active), active
        assert active[("TenantryRestoreTestFailing", "critical")] == "firing"
        assert prom.rules_healthy() == []
        # And nothing the day did not provoke.
        for quiet in (
            "TenantryProvisioningFailures",
            "TenantryWorkerNotSeen",
            "TenantryFleetTenantsFailed",
            "TenantryQueryLatency",
            "TenantryScrapeDown",
        ):
            assert not [a for a in active if a[0] == quiet], active
