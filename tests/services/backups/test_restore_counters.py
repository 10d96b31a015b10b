"""Master's counters for a store (products, orders) follow its database when the contents
are replaced wholesale: a restore in place, a restore into its own URL, recovered rows."""

from __future__ import annotations

from tenantry.db.master.models import Backup
from tenantry.operations.backup_take import take_backup
from tenantry.operations.recover_rows import apply_rows
from tenantry.operations.restore import restore
from tenantry.services import store_data, stores
from tenantry.services.backups.recovery import find_missing_rows
from tenantry.services.backups.restore_plan import plan_restore
from tenantry.services.backups.targets import resolve
from tests.services.backups.conftest import ShopDb, add_products


def _backup(shop: ShopDb) -> Backup:
    p = shop.platform
    with p.sessions() as session:
        target = resolve(session, p.box, p.settings, shop.scope)
    return take_backup(p.sessions, shop.storage, target, actor="cli:test")


def _counters(shop: ShopDb) -> tuple[int, int]:
    with shop.platform.sessions() as session:
        store = stores.get_store(session, shop.slug)
        return store.product_count, store.order_count


def _order(shop: ShopDb) -> None:
    p = shop.platform
    with p.sessions() as master:
        store = stores.get_store(master, shop.slug)
        with p.router.session(master, store) as tenant:
            product = store_data.list_products(tenant, limit=1)[0]
            store_data.create_order(
                tenant,
                master,
                store,
                email="ann@example.com",
                lines=[store_data.OrderLine(product.id, 1)],
            )
            tenant.commit()
            master.commit()


def test_an_in_place_restore_recounts_the_stores_products_and_orders(shop: ShopDb) -> None:
    backup = _backup(shop)
    add_products(shop, "LATE-1", "LATE-2")
    _order(shop)
    assert _counters(shop) == (5, 1)
    p = shop.platform
    with p.sessions() as session:
        plan = plan_restore(session, p.box, p.settings, str(backup.id), target=None, in_place=True)

    restore(p.sessions, shop.storage, p.settings, plan, confirm=plan.confirm_name, actor="cli:test")

    assert _counters(shop) == (3, 0)


def test_a_restore_into_the_stores_own_url_recounts_it_too(shop: ShopDb) -> None:
    backup = _backup(shop)
    add_products(shop, "LATE-1")
    p = shop.platform
    own = shop.url.render_as_string(hide_password=False)
    with p.sessions() as session:
        plan = plan_restore(session, p.box, p.settings, str(backup.id), target=own, in_place=False)

    restore(p.sessions, shop.storage, p.settings, plan, confirm=plan.confirm_name, actor="cli:test")

    assert _counters(shop) == (3, 0)


def test_recovered_rows_count_again(shop: ShopDb) -> None:
    backup = _backup(shop)
    p = shop.platform
    with p.sessions() as master:
        store = stores.get_store(master, shop.slug)
        with p.router.session(master, store) as tenant:
            for product in store_data.list_products(tenant):
                store_data.delete_product(tenant, master, store, product)
            tenant.commit()
            master.commit()
    assert _counters(shop) == (0, 0)

    found = find_missing_rows(p.sessions, p.box, p.settings, shop.storage, backup.id, "products")
    assert apply_rows(p.sessions, p.box, p.settings, found, actor="cli:test") == 3

    assert _counters(shop) == (3, 0)
