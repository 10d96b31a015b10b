"""``from tenantry import Tenantry``: sessions on stores' databases with the HTTP API's rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from tenantry import ConfigurationError, NotFound, StoreSuspended, Tenantry
from tenantry.db.billing.models import BillingCustomer
from tenantry.db.master.models import Store
from tenantry.db.tenant.store.models import Product
from tenantry.errors import InvalidInput
from tenantry.runtime import Platform
from tenantry.settings import Settings
from tests.platform_fixtures import platform, settings
from tests.tenantry_fixtures import app, new_slug, open_store, product

__all__ = ["app", "platform", "settings"]


def skus(app: Tenantry, slug: str) -> set[str]:
    with app.tenant_session(slug) as session:
        return set(session.scalars(select(Product.sku)))


def test_a_session_commits_on_exit_and_rolls_back_on_error(app: Tenantry) -> None:
    open_store(app, "shop-a")
    open_store(app, "shop-b")
    with app.tenant_session("shop-a") as session:
        session.add(product("A-1"))

    def fail_half_way() -> None:
        with app.tenant_session("shop-a") as session:
            session.add(product("A-2"))
            session.flush()
            raise RuntimeError("the app failed half-way")

    with pytest.raises(RuntimeError):
        fail_half_way()
    assert skus(app, "shop-a") == {"A-1"}
    assert skus(app, "shop-b") == set()


def test_unknown_and_suspended_stores_are_refused(app: Tenantry) -> None:
    open_store(app, "shop-s")
    with pytest.raises(NotFound, match="nope"):
        app.tenant_engine("nope")
    app.stores.suspend("shop-s", reason="unpaid")
    with pytest.raises(StoreSuspended, match="'shop-s' is suspended"), app.tenant_session("shop-s"):
        pass
    app.stores.resume("shop-s")
    assert skus(app, "shop-s") == set()


def test_engines_are_bounded_by_max_engines(settings: Settings) -> None:
    one = Tenantry(Platform.open(settings.model_copy(update={"max_engines": 1})), inline=True)
    try:
        for slug in ("lru-a", "lru-b", "lru-c"):
            open_store(one, slug)
            with one.tenant_session(slug) as session:
                session.add(product(slug.upper()))
        assert one.platform.router.stats().engines == 1
        assert {s for slug in ("lru-a", "lru-b", "lru-c") for s in skus(one, slug)} == {
            "LRU-A",
            "LRU-B",
            "LRU-C",
        }
    finally:
        one.close()


@pytest.mark.parametrize("server_backend", ["postgresql", "mysql"])
def test_async_sessions_beside_sqlite(
    app: Tenantry, platform: Platform, server_backend: str
) -> None:
    from tests.conftest import require_server
    from tests.services.test_moves import drop_server_databases, register

    require_server(server_backend)
    register(platform, "srv", server_backend)
    lite, served = new_slug("async-lite"), new_slug("async-srv")
    try:
        open_store(app, lite)
        open_store(app, served, server="srv")
        check_async_sessions(app, lite, served)
    finally:
        drop_server_databases(platform)


def check_async_sessions(app: Tenantry, lite: str, served: str) -> None:
    async def fail_half_way() -> None:
        async with app.tenant_async_session(served) as session:
            session.add(product("ROLLED-BACK"))
            await session.flush()
            raise RuntimeError("boom")

    async def work() -> dict[str, set[str]]:
        for slug in (lite, served):
            async with app.tenant_async_session(slug) as session:
                session.add(product(f"{slug}-1"))
        seen = {}
        for slug in (lite, served):
            async with app.tenant_async_session(slug) as session:
                seen[slug] = set((await session.scalars(select(Product.sku))).all())
        with pytest.raises(RuntimeError):
            await fail_half_way()
        await app.dispose_async_engines()
        return seen

    seen = asyncio.run(work())
    assert seen == {lite: {f"{lite}-1"}, served: {f"{served}-1"}}
    assert skus(app, served) == {f"{served}-1"}  # the sync session sees what async wrote
    app.stores.suspend(served)

    async def refused() -> None:
        async with app.tenant_async_session(served):
            pass

    with pytest.raises(StoreSuspended):
        asyncio.run(refused())


def test_provision_handle_reports_progress(app: Tenantry) -> None:
    app.stores.create("shop-p", "Shop P", plan="starter")
    handle = app.provision("shop-p")
    assert handle.job_id is not None
    handle.wait(timeout=120)
    assert (handle.status, handle.progress, handle.completed) == ("completed", 100, True)
    assert app.stores.get("shop-p").database_status == "active"
    assert [s.slug for s in app.stores.all()] == ["shop-p"]
    app.stores.create("shop-q", "Shop Q")
    assert [s.slug for s in app.stores.all(status="active")] == ["shop-p"]
    assert [s.slug for s in app.stores.all(status="pending")] == ["shop-q"]
    with pytest.raises(InvalidInput, match="pending, provisioning, active"):
        app.stores.all(status="asleep")


def test_master_billing_and_billing_customers(app: Tenantry) -> None:
    open_store(app, "shop-m")
    with app.master_session() as master:
        assert master.scalar(select(Store.name).where(Store.slug == "shop-m")) == "Shop-M"
    first = app.billing.customers.create("cust-1", email="a@example.com", name="Acme")
    again = app.billing.customers.create("cust-1", email="a@example.com", name="Acme")
    assert first.id == again.id
    with app.billing_session() as billing:
        assert (
            billing.scalar(select(BillingCustomer.app_id).where(BillingCustomer.id == first.id))
            == app.settings.app
        )


def test_async_engines_are_bounded_by_max_engines(settings: Settings) -> None:
    one = Tenantry(Platform.open(settings.model_copy(update={"max_engines": 1})), inline=True)
    try:
        for slug in ("alru-a", "alru-b"):
            open_store(one, slug)

        async def use_both() -> list[int]:
            sizes: list[int] = []
            for slug in ("alru-a", "alru-b", "alru-a"):
                async with one.tenant_async_session(slug) as session:
                    session.add(product(f"{slug}-{len(sizes)}"))
                sizes.append(one.async_engines)
            await one.dispose_async_engines()
            return sizes

        assert asyncio.run(use_both()) == [1, 1, 1]
        assert skus(one, "alru-a") == {"alru-a-0", "alru-a-2"}
    finally:
        one.close()


def test_an_uninitialised_installation_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="does not exist") as raised:
        Tenantry.from_env()
    assert raised.value.hint == "Run `tenantry init` first."
