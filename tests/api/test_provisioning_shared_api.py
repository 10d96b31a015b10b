"""`POST /stores/{ref}/provision/shared` over HTTP: a store in its own schema of a shared
PostgreSQL database, as a job polled like any provisioning; MariaDB and bad targets refused
with nothing recorded."""

from __future__ import annotations

import time

import pytest

from tenantry.runtime import Platform
from tests.api.conftest import Api
from tests.conftest import require_server
from tests.platform_fixtures import platform
from tests.services.test_moves import register
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug

__all__ = ["platform", "shared_db"]


def test_a_store_is_provisioned_into_a_shared_schema_and_served(
    api: Api, shared_db: SharedDb
) -> None:
    slug = new_slug("http-sh")
    created = api.client.post("/stores", json={"slug": slug, "name": "S"}, headers=api.admin)
    assert created.status_code == 201, created.text
    answer = api.client.post(
        f"/stores/{slug}/provision/shared", json={"target": shared_db.target}, headers=api.admin
    )
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert answer.headers["Location"] == accepted["status_url"]
    deadline = time.monotonic() + 60
    while True:  # the job runs in the background, as own-database provisioning does
        job = api.client.get(accepted["status_url"], headers=api.admin).json()
        if job["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert (job["status"], job["step"], job["progress"]) == ("completed", "done", 100)
    assert job["tables_created"] == job["total_tables"] == 15
    operations = api.client.get("/operations?kind=provision", headers=api.admin).json()
    assert str(accepted["job_id"]) in [o["id"] for o in operations["items"]]
    shown = api.client.get(f"/stores/{slug}", headers=api.admin).json()
    assert shown["database_type"] == "postgresql"
    store = api.client.get(f"/stores/{slug}", headers=api.admin).json()
    assert store["database_status"] == "active"
    again = api.client.post(
        f"/stores/{slug}/provision/shared", json={"target": shared_db.target}, headers=api.admin
    )
    assert again.status_code == 409
    assert "provisioned already" in again.text


def test_mariadb_and_bad_targets_are_refused(api: Api, platform: Platform) -> None:
    slug = new_slug("http-no")
    assert (
        api.client.post("/stores", json={"slug": slug, "name": "N"}, headers=api.admin).status_code
        == 201
    )
    bad = api.client.post(
        f"/stores/{slug}/provision/shared", json={"target": "pg/Bad;Name"}, headers=api.admin
    )
    assert bad.status_code == 422
    unknown = api.client.post(
        f"/stores/{slug}/provision/shared", json={"target": "nowhere"}, headers=api.admin
    )
    assert unknown.status_code == 404
    require_server("mysql")
    register(platform, "maria", "mysql")
    maria = api.client.post(
        f"/stores/{slug}/provision/shared", json={"target": "maria"}, headers=api.admin
    )
    assert maria.status_code == 422
    assert "PostgreSQL only" in maria.text
    store = api.client.get(f"/stores/{slug}", headers=api.admin).json()
    assert store["database_status"] == "provisioning"


@pytest.mark.parametrize("path", ["/stores/{slug}/provision/shared"])
def test_a_store_key_may_not_provision(api: Api, path: str) -> None:
    slug = new_slug("http-key")
    api.client.post("/stores", json={"slug": slug, "name": "K"}, headers=api.admin)
    refused = api.client.post(
        path.format(slug=slug), json={"target": "pg"}, headers=api.store_key(slug)
    )
    assert refused.status_code == 403
