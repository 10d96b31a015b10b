"""A pooled connection used by store A and then store B never shows A's rows to B: threads
hammer stores through one ``Tenantry``, its engine cache either roomy (pooled connections
reused from store to store's engine) or holding a single engine (engines and their pools
opened, evicted and reopened all the time)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select

from tenantry import Tenantry
from tenantry.db.tenant.store.models import Product
from tenantry.runtime import Platform
from tenantry.settings import Settings
from tests.platform_fixtures import settings
from tests.tenantry_fixtures import new_slug, open_store, product

__all__ = ["settings"]

THREADS = 6
ROUNDS = 8


@pytest.mark.parametrize("max_engines", [1, 64])
def test_threads_on_several_stores_never_see_each_others_rows(
    settings: Settings, max_engines: int
) -> None:
    from tests.conftest import require_server
    from tests.services.test_moves import drop_server_databases, register

    require_server("postgresql")
    platform = Platform.open(settings.model_copy(update={"max_engines": max_engines}))
    app = Tenantry(platform, inline=True)
    register(platform, "pg", "postgresql")
    # Two PostgreSQL stores on one server, and a SQLite one beside them.
    slugs = [new_slug("iso-a"), new_slug("iso-b"), new_slug("iso-c")]
    try:
        open_store(app, slugs[0], server="pg")
        open_store(app, slugs[1], server="pg")
        open_store(app, slugs[2])
        leaks: list[str] = []
        failures: list[BaseException] = []
        written: Counter[str] = Counter()
        lock = threading.Lock()

        def hammer(worker: int) -> None:
            slug = slugs[worker % len(slugs)]
            try:
                for n in range(ROUNDS):
                    with app.tenant_session(slug) as session:
                        session.add(product(f"{slug}-{worker}-{n}"))
                    with app.tenant_session(slug) as session:
                        seen = list(session.scalars(select(Product.sku)))
                    foreign = [s for s in seen if not s.startswith(f"{slug}-")]
                    with lock:
                        written[slug] += 1
                        leaks.extend(f"{slug} saw {s}" for s in foreign)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert leaks == []
        for slug in slugs:
            with app.tenant_session(slug) as session:
                rows = list(session.scalars(select(Product.sku)))
            assert len(rows) == written[slug]
            assert all(sku.startswith(f"{slug}-") for sku in rows)
        if max_engines == 1:
            assert platform.router.stats().evictions > 0  # engines really were churned
    finally:
        drop_server_databases(platform)
        app.close()
