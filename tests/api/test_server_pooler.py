"""PgBouncer in front of a PostgreSQL server: a store's runtime traffic (the API's reads and
writes) goes through it, provisioning and its migrations do not, and taking the pooler away
puts the store back on direct connections. Proven from PgBouncer's own admin console."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, text

from tenantry.db.master.models import IntegrationConfig
from tenantry.db.tenant.store.models import Product
from tenantry.services import stores
from tenantry.services.async_routing import AsyncTenantRouter
from tenantry.services.connections import tenant_url
from tests.api.conftest import Api
from tests.pgbouncer import PgBouncer, pgbouncer
from tests.services.test_moves import admin_url, drop_server_databases

__all__ = ["pgbouncer"]


async def _async_reads(api: Api, slug: str, times: int) -> list[int]:
    with api.platform.sessions() as session:
        route = api.platform.router.route(session, stores.get_store(session, slug))
    assert route.pooled
    router = AsyncTenantRouter(max_engines=2, pool_size=3, statement_timeout_ms=None)
    try:
        engine = await router.engine(route)

        async def hold() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.3)"))

        # Three transactions at once: PgBouncer opens three server connections, which it then
        # hands out in turn (server_round_robin), so a statement psycopg had prepared on one
        # would be missing on the next.
        await asyncio.gather(hold(), hold(), hold())
        counts = []
        async with engine.connect() as conn:
            for _ in range(times):  # the same statement again and again: never prepared
                counts.append(
                    int(await conn.scalar(select(func.count()).select_from(Product)) or 0)
                )
                await conn.commit()
        return counts
    finally:
        await router.dispose_all()


MUG = {"sku": "MUG-1", "name": "Mug", "price_minor": 1250}


def test_a_bad_pooler_url_is_refused_and_nothing_saved(pgbouncer: PgBouncer, api: Api) -> None:
    for bad in ("mysql://root@127.0.0.1:3306/x", "postgresql:///nohost"):
        refused = api.client.post(
            "/database-servers",
            json={"name": "db1", "url": admin_url("postgresql"), "pooler_url": bad},
            headers=api.admin,
        )
        assert refused.status_code == 422, refused.text
        assert "pooler_url" in refused.json()["error"]["message"]
    listed = api.client.get("/database-servers", headers=api.admin).json()
    assert [s["name"] for s in listed] == []


def test_runtime_traffic_goes_through_pgbouncer_and_migrations_do_not(
    pgbouncer: PgBouncer, api: Api
) -> None:
    secret = "pooler-s3cret"
    pooler = pgbouncer.url.replace("://", f"://stats:{secret}@")
    made = api.client.post(
        "/database-servers",
        json={"name": "db1", "url": admin_url("postgresql"), "pooler_url": pooler},
        headers=api.admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["pooled"] is True
    assert secret not in made.text
    database = ""
    try:
        provisioned = api.provisioned_store("pooled", server="db1")
        assert provisioned["job"]["status"] == "completed", provisioned
        with api.platform.sessions() as session:
            store = stores.get_store(session, "pooled")
            config = session.scalars(
                select(IntegrationConfig).where(
                    IntegrationConfig.store_id == store.id, IntegrationConfig.is_active
                )
            ).one()
            login = tenant_url(api.platform.box, config)
        database = str(login.database)
        # Provisioning created and migrated the database on direct connections.
        assert pgbouncer.transactions(database) == 0
        assert pgbouncer.pools(database) == []

        pgbouncer.allow(str(login.username), str(login.password))
        created = api.client.post("/stores/pooled/products", json=MUG, headers=api.admin)
        assert created.status_code == 201, created.text
        listed = api.client.get("/stores/pooled/products", headers=api.admin)
        assert [p["sku"] for p in listed.json()] == ["MUG-1"]
        # ...and the store's reads and writes went through PgBouncer, as its runtime login.
        through = pgbouncer.transactions(database)
        assert through >= 2
        assert {row["user"] for row in pgbouncer.pools(database)} == {login.username}

        # Repeated reads (psycopg would prepare them after 5 uses) work in transaction mode.
        for _ in range(8):
            again = api.client.get("/stores/pooled/products", headers=api.admin)
            assert again.status_code == 200, again.text

        # The async router (tenantry.public's) goes through it the same way.
        before = pgbouncer.transactions(database)
        assert asyncio.run(_async_reads(api, "pooled", 8)) == [1] * 8
        assert pgbouncer.transactions(database) >= before + 8

        # Without the pooler the store is served directly again (PgBouncer sees nothing).
        patched = api.client.patch(
            "/database-servers/db1", json={"pooler_url": None}, headers=api.admin
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["pooled"] is False
        before = pgbouncer.transactions(database)
        direct = api.client.get("/stores/pooled/products", headers=api.admin)
        assert [p["sku"] for p in direct.json()] == ["MUG-1"]
        assert pgbouncer.transactions(database) == before
    finally:
        if database:  # PgBouncer's server connections would keep the database from dropping
            pgbouncer.admin(f'KILL "{database}"')
        drop_server_databases(api.platform)
