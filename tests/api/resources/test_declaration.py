"""A resource declaration is checked when it is made: a column its table lacks, or a filter
on a column that cannot be a query parameter, fails at import with the name of it."""

from __future__ import annotations

import pytest

from tenantry.api.resources import Resource, resources_of
from tenantry.api.resources.schemas import UnsupportedColumn
from tenantry.db.tenant.store.models import Customer, Setting
from tenantry.db.tenant.store.plugin import metadata
from tenantry.errors import ConfigurationError
from tenantry.services.resource_rows import table_of


def test_a_column_the_table_lacks_is_named() -> None:
    with pytest.raises(ValueError, match="customers has no column 'nickname'"):
        Resource(Customer, "customers", create=("email", "nickname"))


def test_a_json_column_cannot_be_a_filter() -> None:
    with pytest.raises(UnsupportedColumn, match=r"settings\.value"):
        Resource(Setting, "settings", filters=("value",))


def test_the_default_schema_serves_every_table_but_products_and_orders() -> None:
    served = {table_of(r.model).name for r in resources_of("tenantry.db.tenant.store.plugin")}
    assert len(served) == 13
    assert not served & {"products", "orders"}  # their own routes serve them
    assert served | {"products", "orders"} == set(metadata.tables)


def test_a_plugin_without_resources_serves_none_and_bad_ones_are_refused() -> None:
    assert resources_of("tests.fixtures.shop_plugin") == []
    with pytest.raises(ConfigurationError, match="RESOURCES must be a list"):
        resources_of("tests.api.resources.bad_resources")
