"""Store data over HTTP around a move: writes refused with 503 + Retry-After while the store's
writes are blocked, reads served all along, and the new database serving after the switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from tenantry.db import readonly
from tenantry.db.engines import BUSY_TIMEOUT_ENV, connect, make_engine
from tenantry.db.tenant.store.models import Product
from tenantry.db.write_fence import fence_writes
from tenantry.operations.move_store import StoreMover
from tenantry.services import servers, stores
from tenantry.services.connections import migrator_url, tenant_url
from tenantry.services.move_progress import MoveProgress
from tenantry.services.write_blocks import MAX_RETRY_AFTER_S
from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, require_server
from tests.services.test_moves import drop_server_databases

MUG = {"sku": "MUG-1", "name": "Mug", "price_minor": 1250}


def _products_in(url: URL) -> int:
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            return int(conn.scalar(select(func.count()).select_from(Product)) or 0)
    finally:
        engine.dispose()


def _register_pg(api: Api) -> None:
    """The local PostgreSQL server, registered as ``pg``."""
    with api.platform.sessions.begin() as session:
        servers.add_server(
            session,
            api.platform.box,
            name="pg",
            admin_url=SERVER_URLS["postgresql"],
            actor="cli:test",
        )


def _database_of(api: Api, slug: str) -> URL:
    """Where store ``slug``'s database is now (its runtime URL)."""
    with api.platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        return tenant_url(api.platform.box, config)


def _assert_writes_refused(api: Api, slug: str, product_id: str) -> None:
    attempts: list[httpx.Response] = [
        api.client.post(f"/stores/{slug}/products", json=MUG | {"sku": "NO"}, headers=api.admin),
        api.client.patch(
            f"/stores/{slug}/products/{product_id}", json={"name": "No"}, headers=api.admin
        ),
        api.client.delete(f"/stores/{slug}/products/{product_id}", headers=api.admin),
        api.client.post(
            f"/stores/{slug}/orders",
            json={"email": "a@example.com", "items": [{"product_id": product_id, "quantity": 1}]},
            headers=api.admin,
        ),
    ]
    for refused in attempts:
        assert refused.status_code == 503, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= MAX_RETRY_AFTER_S
        error = refused.json()["error"]
        assert error["type"] == "WritesBlocked"
        assert "reads still work" in error["message"]


def test_writes_get_503_while_blocked_and_reads_still_answer(api: Api) -> None:
    api.provisioned_store("held")
    made = api.client.post("/stores/held/products", json=MUG, headers=api.admin)
    assert made.status_code == 201
    with api.platform.sessions.begin() as session:
        store = stores.get_store(session, "held")
        store.write_block_reason = "restoring a backup"
        store.write_block_until = datetime.now(UTC) + timedelta(minutes=10)

    _assert_writes_refused(api, "held", made.json()["id"])
    listed = api.client.get("/stores/held/products", headers=api.admin)
    assert listed.status_code == 200
    assert [p["sku"] for p in listed.json()] == ["MUG-1"]
    assert api.client.get(
        f"/stores/held/products/{made.json()['id']}", headers=api.admin
    ).is_success

    # A block whose time ran out (its mover died) refuses nothing.
    with api.platform.sessions.begin() as session:
        stores.get_store(session, "held").write_block_until = datetime.now(UTC)
    again = api.client.post("/stores/held/products", json=MUG | {"sku": "MUG-2"}, headers=api.admin)
    assert again.status_code == 201, again.text


def test_a_moved_store_is_served_from_its_new_database(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("postgresql")
    # The API's pool keeps the SQLite source open: the move gives up leaving WAL mode after
    # the busy timeout (tests/services/test_moves.py covers that); 2 s, not 10.
    monkeypatch.setenv(BUSY_TIMEOUT_ENV, "2000")
    api.provisioned_store("mover")
    for n in range(3):
        made = api.client.post(
            "/stores/mover/products", json=MUG | {"sku": f"MUG-{n}"}, headers=api.admin
        )
        assert made.status_code == 201, made.text
    product_id = made.json()["id"]
    _register_pg(api)
    source = _database_of(api, "mover")
    during: list[str] = []

    def meanwhile(state: MoveProgress) -> None:
        # In the middle of the copy: writes are refused, reads answer from the source.
        if state.step == "copy" and not during:
            _assert_writes_refused(api, "mover", product_id)
            listed = api.client.get("/stores/mover/products", headers=api.admin)
            assert listed.status_code == 200
            during.append(",".join(sorted(p["sku"] for p in listed.json())))

    mover = StoreMover(
        api.platform.sessions,
        api.platform.box,
        api.platform.settings,
        api.platform.tenant_spec,
        on_progress=meanwhile,
        actor="cli:test",
    )
    try:
        moved = mover.move("mover", "pg")
        assert moved.status == "completed", moved.error
        assert during == ["MUG-0,MUG-1,MUG-2"]

        # Data written before the move is there; a new write lands in the new database.
        listed = api.client.get("/stores/mover/products", headers=api.admin)
        assert sorted(p["sku"] for p in listed.json()) == ["MUG-0", "MUG-1", "MUG-2"]
        added = api.client.post(
            "/stores/mover/products", json=MUG | {"sku": "AFTER"}, headers=api.admin
        )
        assert added.status_code == 201, added.text
        shown = api.client.get("/stores/mover", headers=api.admin).json()
        assert shown["database_type"] == "postgresql"
        target = _database_of(api, "mover")
        assert _products_in(target) == 4
        assert _products_in(source) == 3
    finally:
        drop_server_databases(api.platform)


def test_a_write_the_move_fence_refuses_is_a_503_and_reads_still_answer(api: Api) -> None:
    # A write that passed the block check just before a move's block reaches a PostgreSQL
    # source the fence has made read-only: the client gets the block's 503, not a 500.
    require_server("postgresql")
    _register_pg(api)
    result = api.provisioned_store("fenced", mode="create_new", server="pg")
    assert result["job"]["status"] == "completed", result["job"]
    made = api.client.post("/stores/fenced/products", json=MUG, headers=api.admin)
    assert made.status_code == 201, made.text
    with api.platform.sessions() as session:
        store = stores.get_store(session, "fenced")
        config = stores.active_connection(session, store)
        assert config is not None
        source = migrator_url(session, api.platform.box, config)
    before = readonly.writable_state(source)
    fence = fence_writes(source, 5)  # as a move does, with no block set in master
    try:
        assert fence.applied_read_only
        refused = api.client.post(
            "/stores/fenced/products", json=MUG | {"sku": "LATE"}, headers=api.admin
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert refused.json()["error"]["type"] == "WritesBlocked"
        listed = api.client.get("/stores/fenced/products", headers=api.admin)
        assert listed.status_code == 200
        assert [p["sku"] for p in listed.json()] == ["MUG-1"]
        readonly.make_writable(source, {**before, "read_only_since": fence.read_only_since})
        again = api.client.post(
            "/stores/fenced/products", json=MUG | {"sku": "AFTER"}, headers=api.admin
        )
        assert again.status_code == 201, again.text
    finally:
        readonly.make_writable(source, before)
        drop_server_databases(api.platform)


def test_a_move_over_http_closes_the_apis_own_connections_to_its_sqlite_source(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API's pool keeps a store's SQLite file open after serving it; a file held open
    # cannot leave WAL mode, and the move used to wait the busy timeout for it in vain (and
    # then say "another process" held it). The process moving the store closes its own.
    require_server("postgresql")
    monkeypatch.setenv(BUSY_TIMEOUT_ENV, "2000")
    api.provisioned_store("leaver")
    made = api.client.post("/stores/leaver/products", json=MUG, headers=api.admin)
    assert made.status_code == 201, made.text  # the API has the file open now
    _register_pg(api)
    source = _database_of(api, "leaver")
    try:
        moved = api.client.post("/stores/leaver/move", json={"to_server": "pg"}, headers=api.admin)

        assert moved.status_code == 200, moved.text
        file = Path(str(source.database))
        assert moved.json()["details"]["source_read_only"] == {
            "applied": True,
            "how": f"file mode set to 0400 ({file.name})",
        }
        assert not Path(f"{file}-wal").exists()  # out of WAL mode: readable without writing
        listed = api.client.get("/stores/leaver/products", headers=api.admin)
        assert [p["sku"] for p in listed.json()] == [MUG["sku"]]
    finally:
        drop_server_databases(api.platform)
