"""Placement over HTTP: servers registered and changed with labels and capacity, their load
listed, stores created with a residency requirement, and provisioning placed or refused
(409, nothing recorded)."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, require_server


def _register(api: Api, name: str, **placement: object) -> dict[str, object]:
    require_server("postgresql")
    answer = api.client.post(
        "/database-servers",
        json={"name": name, "url": SERVER_URLS["postgresql"], **placement},
        headers=api.admin,
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, object] = answer.json()
    return body


def _listed(api: Api) -> dict[str, dict[str, object]]:
    answer = api.client.get("/database-servers", headers=api.admin)
    assert answer.status_code == 200, answer.text
    return {s["name"]: s for s in answer.json()}


def test_servers_take_labels_and_capacity_and_list_their_load(api: Api) -> None:
    made = _register(api, "pg-eu", region="eu", tier="gold", max_tenants=3, max_bytes=10**9)
    assert (made["region"], made["tier"], made["max_tenants"], made["accepting"]) == (
        "eu",
        "gold",
        3,
        True,
    )
    listed = _listed(api)["pg-eu"]
    assert (listed["tenants"], listed["bytes"], listed["tenant_headroom"]) == (0, 0, 3)
    assert listed["byte_headroom"] == 10**9
    changed = api.client.patch(
        "/database-servers/pg-eu",
        json={"accepting": False, "max_tenants": None, "region": "eu-west"},
        headers=api.admin,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["accepting"], body["max_tenants"], body["region"]) == (False, None, "eu-west")
    assert (body["tier"], body["max_bytes"]) == ("gold", 10**9)  # not given: unchanged
    for bad in ({"region": "EU"}, {"accepting": None}, {"max_bytes": 0}, {"max_tenants": -1}):
        refused = api.client.patch("/database-servers/pg-eu", json=bad, headers=api.admin)
        assert refused.status_code == 422, (bad, refused.text)
    assert _listed(api)["pg-eu"]["region"] == "eu-west"
    missing = api.client.patch("/database-servers/nope", json={}, headers=api.admin)
    assert missing.status_code == 404


def test_a_store_whose_residency_no_server_meets_gets_409_and_no_job(api: Api) -> None:
    _register(api, "pg-us", region="us")
    created = api.client.post(
        "/stores", json={"slug": "eu-shop", "name": "Eu", "region": "eu"}, headers=api.admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["residency_region"] == "eu"
    refused = api.client.post("/stores/eu-shop/provision", json={}, headers=api.admin)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert "requires region eu" in error["message"]
    assert "pg-us: region us" in error["message"]
    explicit = api.client.post(
        "/stores/eu-shop/provision", json={"server": "pg-us"}, headers=api.admin
    )
    assert explicit.status_code == 409, explicit.text
    jobs = api.client.get("/operations?kind=provision", headers=api.admin)
    assert jobs.status_code == 200, jobs.text
    assert jobs.json()["items"] == []
    bad = api.client.post(
        "/stores", json={"slug": "bad-shop", "name": "B", "region": "Eu"}, headers=api.admin
    )
    assert bad.status_code == 422
