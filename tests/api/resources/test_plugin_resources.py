"""A tenant schema plug-in's own table served over HTTP from its ``RESOURCES`` declaration
(integer ids the database makes, a unique label, a plan limit), in place of the store
schema's; store databases on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import update

from tenantry.db.master.models import Subscription
from tenantry.services import stores
from tenantry.settings import Settings, load_settings
from tests.api.conftest import Api
from tests.api.resources.conftest import ShopFactory
from tests.conftest import drop_schema_templates
from tests.fixtures.shop_plugin import SCHEMA_NAME


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The installation with the test plug-in (and its resources) as tenant schema; the
    template its PostgreSQL store's database was cloned from is dropped after."""
    monkeypatch.setenv("TENANTRY_TENANT_SCHEMA", "tests.fixtures.gauge_api")
    yield load_settings()
    drop_schema_templates(SCHEMA_NAME)


def test_a_plugin_serves_its_own_resources(api: Api, new_shop: ShopFactory) -> None:
    shop = new_shop("g")
    base, h = f"/stores/{shop}", api.admin
    made = api.client.post(f"{base}/gauges", json={"label": "boiler", "unit": "bar"}, headers=h)
    assert made.status_code == 201, made.text
    gauge = made.json()
    assert isinstance(gauge["id"], int)
    assert gauge["label"] == "boiler"
    assert api.client.get(f"{base}/gauges/{gauge['id']}", headers=h).json() == gauge
    changed = api.client.patch(f"{base}/gauges/{gauge['id']}", json={"unit": "psi"}, headers=h)
    assert changed.status_code == 200
    assert changed.json()["unit"] == "psi"
    second = api.client.post(f"{base}/gauges", json={"label": "tank"}, headers=h)
    assert second.status_code == 201, second.text
    listed = api.client.get(f"{base}/gauges", params={"label": "tank"}, headers=h).json()
    assert [g["label"] for g in listed["items"]] == ["tank"]
    twice = api.client.post(f"{base}/gauges", json={"label": "boiler"}, headers=h)
    assert twice.status_code == 409
    assert twice.json()["error"]["message"].startswith("label:")

    with api.platform.sessions.begin() as session:
        store_id = stores.get_store(session, shop).id
        session.execute(
            update(Subscription).where(Subscription.store_id == store_id).values(max_products=2)
        )
    over = api.client.post(f"{base}/gauges", json={"label": "pump"}, headers=h)
    assert over.status_code == 403
    assert "2 gauges" in over.json()["error"]["message"]
    assert api.client.delete(f"{base}/gauges/{gauge['id']}", headers=h).status_code == 204
    again = api.client.post(f"{base}/gauges", json={"label": "pump"}, headers=h)
    assert again.status_code == 201, again.text
    labels = [g["label"] for g in api.client.get(f"{base}/gauges", headers=h).json()["items"]]
    assert labels == ["tank", "pump"]
    # The store schema's resources are not this schema's.
    assert api.client.get(f"{base}/categories", headers=h).status_code == 404
