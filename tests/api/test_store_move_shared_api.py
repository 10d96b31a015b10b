"""`POST /stores/{ref}/move` over HTTP with the choices `stores move` takes: a shared-schema
store into an SQLite file of its own and back into its shared database, listed by `GET
/moves`; contradictory choices a 422, a refused move a 409, a store key a 403."""

from __future__ import annotations

from sqlalchemy import func, select

from tenantry.db.tenant.store.models import Product
from tenantry.operations.provision_shared import provision_shared_store
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.api.conftest import Api
from tests.platform_fixtures import platform
from tests.services.test_moves import PG_PASSWORD
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug

__all__ = ["platform", "shared_db"]


def test_a_shared_store_moves_out_and_back_over_http(
    api: Api, platform: Platform, shared_db: SharedDb
) -> None:
    slug = new_slug("http-mv")
    api.client.post("/stores", json={"slug": slug, "name": "M"}, headers=api.admin)
    schema = provision_shared_store(platform, slug, shared_db.target, actor="cli:test").schema

    out = api.client.post(
        f"/stores/{slug}/move",
        json={"to_own_database": True, "to_server": "sqlite"},
        headers=api.admin,
    )

    assert out.status_code == 200, out.text
    doc = out.json()
    assert (doc["status"], doc["to_server"]) == ("completed", "sqlite")
    assert doc["details"]["source"]["schema"] == schema
    assert doc["details"]["target"]["engine"] == "sqlite"
    assert api.client.get(f"/stores/{slug}", headers=api.admin).json()["database_type"] == (
        "sqlite"
    )

    back = api.client.post(
        f"/stores/{slug}/move", json={"to_shared": shared_db.target}, headers=api.admin
    )

    assert back.status_code == 200, back.text
    # Its first schema is still kept there as the last move's source: new names this time.
    assert back.json()["details"]["target"]["schema"].startswith(f"{schema}_m")
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        with platform.router.session(session, store) as tenant:
            tenant.add(Product(sku="BACK-1", slug="back-1", name="Back"))
            tenant.commit()
            assert tenant.scalar(select(func.count()).select_from(Product)) == 1
    assert PG_PASSWORD not in out.text + back.text
    moves = api.client.get(f"/moves?store={slug}", headers=api.admin).json()
    assert [(m["from"], m["to"]) for m in moves] == [
        ("sqlite file", shared_db.target),
        (shared_db.target, "sqlite file"),
    ]
    # Into the database it lives in: refused (409), naming what to give instead.
    same = api.client.post(
        f"/stores/{slug}/move", json={"to_shared": shared_db.target}, headers=api.admin
    )
    assert same.status_code == 409
    assert "--to-own-database" in same.json()["error"]["hint"]


def test_contradictory_choices_and_store_keys_are_refused(api: Api) -> None:
    slug = new_slug("http-mx")
    api.client.post("/stores", json={"slug": slug, "name": "X"}, headers=api.admin)
    both = api.client.post(
        f"/stores/{slug}/move",
        json={"to_shared": "pg", "to_own_database": True},
        headers=api.admin,
    )
    assert both.status_code == 422
    assert "--to-shared cannot go with" in both.json()["error"]["message"]
    nothing = api.client.post(f"/stores/{slug}/move", json={}, headers=api.admin)
    assert nothing.status_code == 422
    keyed = api.client.post(
        f"/stores/{slug}/move", json={"to_server": "pg"}, headers=api.store_key(slug)
    )
    assert keyed.status_code == 403
