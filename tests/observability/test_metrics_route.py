"""``GET /metrics`` after real work: provisioning, requests, backups and a failed restore test."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tenantry.db import migrations
from tenantry.services import apikeys
from tests.api.conftest import Api
from tests.observability.scrape import Scrape, scrape


def _key(api: Api, **kwargs: Any) -> dict[str, str]:
    with api.platform.sessions.begin() as session:
        made = apikeys.create_key(session, name="prometheus", actor="cli:test", **kwargs)
    return api.as_key(made.plaintext)


def test_metrics_need_a_platform_key(api: Api) -> None:
    api.provisioned_store("acme")
    assert api.client.get("/metrics").status_code == 401
    store_key = api.store_key("acme")
    refused = api.client.get("/metrics", headers=store_key)
    assert refused.status_code == 403
    assert "platform key" in refused.json()["error"]["message"]
    app_key = _key(api, scope=apikeys.Scope.APP, app_id="acme")
    assert api.client.get("/metrics", headers=app_key).status_code == 403
    # Prometheus' own key: a read-only admin key is enough.
    reader = _key(api, scope=apikeys.Scope.ADMIN, read_only=True)
    found = scrape(api.client, reader)
    assert found.value("tenantry_info") == 1


def _counts(found: Scrape) -> dict[str, float]:
    return {
        "stores_201": found.value(
            "tenantry_http_requests_total", method="POST", route="/stores", status="201"
        ),
        "unmatched": found.value("tenantry_http_requests_total", route="<unmatched>", status="404"),
        "provisions": found.value(
            "tenantry_operation_duration_seconds_count", kind="provision", status="succeeded"
        ),
        "tenant_queries": found.value("tenantry_db_query_duration_seconds_count", role="tenant"),
        "master_queries": found.value("tenantry_db_query_duration_seconds_count", role="master"),
    }


def test_a_scrape_after_provisioning_counts_requests_operations_and_queries(api: Api) -> None:
    before = _counts(scrape(api.client, api.admin))
    api.provisioned_store("acme")
    api.provisioned_store("globex")
    key = api.store_key("acme")
    assert api.client.get("/stores/acme/products", headers=key).status_code == 200
    assert api.client.get("/no/such/path/123", headers=api.admin).status_code == 404
    found = scrape(api.client, api.admin)
    after = _counts(found)

    # Counted by route template, never by path: both stores share one series.
    assert after["stores_201"] - before["stores_201"] == 2
    assert found.has(
        "tenantry_http_requests_total",
        method="POST",
        route="/stores/{store_ref}/provision",
        status="202",
    )
    assert not any("acme" in labels.get("route", "") for _, labels, _ in found.samples)
    assert after["unmatched"] - before["unmatched"] == 1
    assert (
        found.value("tenantry_http_request_duration_seconds_count", method="GET", route="/metrics")
        >= 1
    )
    assert after["provisions"] - before["provisions"] == 2
    assert after["tenant_queries"] > before["tenant_queries"]
    assert after["master_queries"] > before["master_queries"]
    assert found.value("tenantry_tenant_engines") >= 1

    # Read from master at scrape time.
    assert found.value("tenantry_operations_total", kind="provision", status="succeeded") == 2
    assert found.value("tenantry_operations_started_total", kind="provision") == 2
    # Outcomes not seen yet are there at 0: the first failure is an increase, not a new series.
    assert found.has("tenantry_operations_total", kind="provision", status="failed")
    assert found.value("tenantry_operations_total", kind="provision", status="failed") == 0
    assert found.has("tenantry_webhooks_processed_total", processor="stripe", status="failed")
    assert found.value("tenantry_tenant_databases", status="active") == 2
    head = migrations.head(api.platform.tenant_spec)
    assert head is not None
    assert found.value("tenantry_fleet_tenants", revision=head) == 2
    assert found.value("tenantry_fleet_tenants_lagging") == 0
    assert found.value("tenantry_fleet_tenants_failed") == 0
    assert {
        labels["store"] for labels, _ in found.series("tenantry_tenant_database_size_bytes")
    } == {
        "acme",
        "globex",
    }
    assert found.value("tenantry_database_size_bytes", database="master") > 0
    assert found.value("tenantry_database_size_bytes", database="billing") > 0
    free = found.value("tenantry_disk_free_bytes", location="data_dir")
    assert 0 < free <= found.value("tenantry_disk_size_bytes", location="data_dir")
    assert found.value("tenantry_queue_depth") == 0
    assert found.value("tenantry_workers_alive") == 0
    assert found.value("tenantry_worker_last_seen_timestamp_seconds") == 0
    assert found.value("tenantry_collector_errors_total") == 0


def _artifact(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def test_backups_and_a_failed_restore_test_show_per_scope(api: Api, cli: Any) -> None:
    api.provisioned_store("acme")
    found = scrape(api.client, api.admin)
    # Nothing backed up yet: never (0), against the policies' maximum ages.
    assert found.value("tenantry_backup_last_success_timestamp_seconds", scope="master") == 0
    assert found.value("tenantry_backup_last_success_timestamp_seconds", scope="tenant") == 0
    assert found.value("tenantry_backup_max_age_seconds", scope="master") == 36 * 3600
    assert found.value("tenantry_backup_max_age_seconds", scope="billing") == 12 * 3600
    assert found.value("tenantry_backup_tenants_overdue") == 1

    started = time.time()
    taken = {}
    for scope in ("master", "store:acme"):
        accepted = api.client.post("/backups", json={"db": scope}, headers=api.admin)
        assert accepted.status_code == 202, accepted.text
        taken[scope] = api.client.get(f"/backups/{accepted.json()['id']}", headers=api.admin).json()
        assert taken[scope]["status"] == "stored"
    found = scrape(api.client, api.admin)
    for scope in ("master", "tenant"):
        last = found.value("tenantry_backup_last_success_timestamp_seconds", scope=scope)
        assert started - 5 <= last <= time.time() + 5
        assert found.value("tenantry_backup_last_restore_test_failed", scope=scope) == 0
    assert found.value("tenantry_backup_last_success_timestamp_seconds", scope="billing") == 0
    assert found.value("tenantry_backup_tenants_overdue") == 0
    assert found.value("tenantry_operations_total", kind="backup", status="succeeded") == 2

    # A restore test of a damaged artifact fails: the scope says so.
    artifact = _artifact(taken["master"]["location"])
    artifact.write_bytes(b"not a backup")
    result = cli("backup", "verify", taken["master"]["id"])
    assert result.exit_code == 1, result.output
    found = scrape(api.client, api.admin)
    assert found.value("tenantry_backup_last_restore_test_failed", scope="master") == 1
    assert found.value("tenantry_backup_last_restore_test_failed", scope="tenant") == 0
    assert (
        found.value("tenantry_backup_last_verified_restore_timestamp_seconds", scope="master") == 0
    )
    # The damaged backup no longer counts as one.
    assert found.value("tenantry_backup_last_success_timestamp_seconds", scope="master") == 0
