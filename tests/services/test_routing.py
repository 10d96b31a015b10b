"""The tenant router: a bounded LRU of engines, refusing unavailable stores, never the wrong DB."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from tenantry.crypto import SecretBox
from tenantry.db.master.models import ProvisioningMode, Store
from tenantry.db.tenant.store.models import Category
from tenantry.errors import StoreUnavailable, WrongDatabase
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, stores
from tenantry.services.connections import tenant_url
from tenantry.services.routing import TenantRouter
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def _provisioned(platform: Platform, slugs: list[str]) -> None:
    for slug in slugs:
        with platform.sessions.begin() as session:
            store = stores.create_store(session, slug=slug, name=slug, actor="cli:test")
            job = provisioning.request_provisioning(
                session,
                platform.box,
                platform.settings,
                store,
                mode=ProvisioningMode.CREATE_NEW,
                actor="cli:test",
            )
        outcome = Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "t"
        ).run(job.id)
        assert outcome == "completed"


def test_cache_is_bounded_and_least_recently_used_goes_first(platform: Platform) -> None:
    slugs = [f"shop-{n}" for n in range(6)]
    _provisioned(platform, slugs)
    router = TenantRouter(platform.box, max_engines=3, pool_size=1, idle_seconds=3600)
    with platform.sessions() as master:
        rows = {s.slug: s for s in master.scalars(select(Store))}
        for slug in slugs:
            with router.session(master, rows[slug]) as tenant:
                assert tenant.scalar(select(func.count()).select_from(Category)) == 2
        stats = router.stats()
        assert stats.engines == 3
        assert stats.evictions == 3
        with router.session(master, rows["shop-5"]):
            pass  # still cached: a hit
        assert router.stats().hits == 1
        with router.session(master, rows["shop-0"]):
            pass  # evicted long ago: a miss
        assert router.stats().misses == 7
    router.dispose_all()


def test_idle_engines_are_disposed(platform: Platform) -> None:
    _provisioned(platform, ["a-shop", "b-shop"])
    router = TenantRouter(platform.box, max_engines=10, idle_seconds=0.0001)
    with platform.sessions() as master:
        a, b = (stores.get_store(master, s) for s in ("a-shop", "b-shop"))
        router.engine(master, a)
        router.engine(master, b)  # a has been idle longer than the limit by now
        assert router.stats().engines == 1
    router.dispose_all()


def test_suspension_and_connection_changes_drop_the_engine(platform: Platform) -> None:
    _provisioned(platform, ["moody"])
    router = platform.router
    with platform.sessions() as master:
        store = stores.get_store(master, "moody")
        first = router.engine(master, store)
        stores.suspend_store(master, store, actor="cli:test")
        master.commit()
        with pytest.raises(StoreUnavailable, match="suspended"):
            router.engine(master, store)
        stores.resume_store(master, store, actor="cli:test")
        master.commit()
        second = router.engine(master, store)
        assert second is not first  # the version moved on: a fresh engine
        assert router.engine(master, store) is second


def test_a_swapped_database_is_refused(platform: Platform) -> None:
    _provisioned(platform, ["victim", "other"])
    router = TenantRouter(platform.box)
    with platform.sessions() as master:
        victim, other = stores.get_store(master, "victim"), stores.get_store(master, "other")
        config_v = stores.active_connection(master, victim)
        config_o = stores.active_connection(master, other)
        assert config_v is not None
        assert config_o is not None
        # Someone points the victim's connection at the other store's database.
        config_v.config_data = dict(config_o.config_data)
        victim.connection_version += 1
        master.flush()
        with pytest.raises(WrongDatabase, match="not to its own database"):
            router.engine(master, victim)
        master.rollback()
    router.dispose_all()


def test_urls_are_rebuilt_with_the_secret(platform: Platform) -> None:
    box: SecretBox = platform.box
    _provisioned(platform, ["plain"])
    with platform.sessions() as master:
        config = stores.active_connection(master, stores.get_store(master, "plain"))
        assert config is not None
        url = tenant_url(box, config)
        assert url.get_backend_name() == "sqlite"
        with platform.router.connection(master, stores.get_store(master, "plain")) as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM settings")).scalar() == 5
