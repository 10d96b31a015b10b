"""The backup routes: admin keys only, a requested backup is taken by a worker and followed."""

from __future__ import annotations

from tests.api.conftest import Api


def test_a_requested_backup_is_taken_and_can_be_followed(api: Api) -> None:
    api.provisioned_store("acme")
    accepted = api.client.post(
        "/backups", json={"db": "store:acme", "label": "before launch"}, headers=api.admin
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    backup_id = accepted.json()["id"]

    shown = api.client.get(f"/backups/{backup_id[:8]}", headers=api.admin)
    assert shown.status_code == 200
    entry = shown.json()
    assert entry["status"] == "stored"  # the (immediate) worker took it
    assert entry["scope"] == "store:acme"
    assert entry["label"] == "before launch"
    assert entry["row_counts"]["tenantry_identity"] == 1
    assert entry["location"].endswith(".zst")

    listed = api.client.get("/backups", params={"db": "store:acme"}, headers=api.admin).json()
    assert [b["id"] for b in listed] == [backup_id]

    protection = {
        p["scope"]: p for p in api.client.get("/backups/status", headers=api.admin).json()
    }
    assert protection["store:acme"]["protected"] is True
    assert protection["master"]["protected"] is False


def test_backup_routes_refuse_store_keys_and_bad_input(api: Api) -> None:
    api.provisioned_store("acme")
    store_key = api.store_key("acme")
    assert api.client.get("/backups", headers=store_key).status_code == 403
    assert api.client.post("/backups", json={"db": "billing"}, headers=store_key).status_code == 403
    bad = api.client.post("/backups", json={"db": "everything"}, headers=api.admin)
    assert bad.status_code == 422
    assert "master, billing or store:SLUG" in bad.json()["error"]["message"]
    missing = api.client.get("/backups/0000", headers=api.admin)
    assert missing.status_code == 404
