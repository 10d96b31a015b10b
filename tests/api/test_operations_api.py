"""``/operations``: one list of every operation, scoped to what the key may see."""

from __future__ import annotations

import uuid

from tenantry.db.master.models import OperationKind, ProgressUnit
from tenantry.operations.kit import OperationKit
from tenantry.services import stores
from tests.api.conftest import Api


def _store(api: Api, slug: str) -> uuid.UUID:
    created = api.client.post("/stores", json={"slug": slug, "name": slug}, headers=api.admin)
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["id"])


def _kit(api: Api) -> OperationKit:
    return OperationKit(api.platform.sessions, lease_seconds=30)


def test_admin_sees_all_a_store_key_only_its_stores(api: Api) -> None:
    mine, other = _store(api, "op-mine"), _store(api, "op-other")
    kit = _kit(api)
    my_op = kit.create(OperationKind.RESTORE, store_id=mine, target="op-mine")
    other_op = kit.create(OperationKind.RESTORE, store_id=other, target="op-other")
    platform_op = kit.create(OperationKind.BACKUP, target="master")
    assert kit.claim(my_op) is not None
    kit.progress(my_op, step="create_tables", current=2, total=5, unit=ProgressUnit.TABLES)

    everything = api.client.get("/operations", headers=api.admin)
    assert everything.status_code == 200, everything.text
    assert everything.json()["total"] == 3
    assert {i["id"] for i in everything.json()["items"]} == {
        str(my_op),
        str(other_op),
        str(platform_op),
    }
    key = api.store_key("op-mine")
    own = api.client.get("/operations", headers=key).json()
    assert [i["id"] for i in own["items"]] == [str(my_op)]
    assert own["items"][0]["progress"] == {
        "step": "create_tables",
        "current": 2,
        "total": 5,
        "unit": "tables",
        "message": None,
    }
    assert api.client.get(f"/operations/{str(my_op)[:8]}", headers=key).status_code == 200
    for hidden in (other_op, platform_op):
        assert api.client.get(f"/operations/{hidden}", headers=key).status_code == 404
    assert api.client.get("/operations?store=op-other", headers=key).status_code == 404
    assert api.client.post(f"/operations/{my_op}/cancel", headers=key).status_code == 403


def test_filters_and_pages(api: Api) -> None:
    store_id = _store(api, "op-pages")
    kit = _kit(api)
    made = [kit.create(OperationKind.BACKUP, store_id=store_id) for _ in range(3)]
    kit.create(OperationKind.RESTORE, store_id=store_id)
    page = api.client.get("/operations?kind=backup&limit=2&offset=1", headers=api.admin).json()
    assert page["total"] == 3
    assert len(page["items"]) == 2
    assert {i["id"] for i in page["items"]} <= {str(m) for m in made}
    assert api.client.get("/operations?store=op-pages", headers=api.admin).json()["total"] == 4
    running = api.client.get("/operations?status=running", headers=api.admin).json()
    assert running["total"] == 0
    bad = api.client.get("/operations?kind=nonsense", headers=api.admin)
    assert bad.status_code == 422


def test_cancel_queued_then_running_then_refused_once_over(api: Api) -> None:
    kit = _kit(api)
    queued = kit.create(OperationKind.BACKUP)
    running = kit.create(OperationKind.INIT)
    assert kit.claim(running) is not None
    first = api.client.post(f"/operations/{queued}/cancel", headers=api.admin)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "cancelled"
    second = api.client.post(f"/operations/{str(running)[:12]}/cancel", headers=api.admin)
    assert second.json()["status"] == "cancelling"
    assert kit.cancel_requested(running)
    over = api.client.post(f"/operations/{queued}/cancel", headers=api.admin)
    assert over.status_code == 409
    assert "only queued or running" in over.json()["error"]["message"]
    with api.platform.sessions() as session:
        assert stores.list_stores(session)[1] == 0  # nothing else was touched
