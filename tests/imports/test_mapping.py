"""The mapping file: the minimal form of the issue, and strict refusals that name the place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantry.errors import InvalidInput
from tenantry.imports.mapping import load_mapping, parse_mapping

MINIMAL = """
stores: {table: stores, key: id, slug: slug, name: name}   # source stores → tenantry stores
tables:
  products: {from: products, store_column: store_id}
  orders: {from: orders, store_column: store_id}
  order_items: {from: order_items, via: {orders: order_id}} # store key reached through orders
"""


def test_the_minimal_form_of_the_issue_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "map.yml"
    path.write_text(MINIMAL)
    mapping = load_mapping(path)
    assert mapping.stores.slug == "slug"
    assert mapping.tables["products"].source == "products"
    assert mapping.tables["order_items"].parent == ("orders", "order_id")
    assert mapping.tables["products"].source_column("sku") == "sku"  # same name: copied


def _refused(document: dict[str, object]) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_mapping(document, origin="map.yml")
    return caught.value.message


STORES = {"table": "stores", "key": "id", "slug": "slug"}


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            {"products": {"from": "products", "store_colum": "store_id"}},
            "tables.products.store_colum: unknown key",
        ),
        (
            {"products": {"from": "products"}},
            "tables.products: give exactly one of `store_column`",
        ),
        (
            {"items": {"from": "items", "via": {"orders": "order_id"}}},
            "tables.items.via names 'orders', which is not a table of this mapping",
        ),
        (
            {
                "products": {
                    "from": "products",
                    "store_column": "store_id",
                    "transforms": {"status": {"constant": "active", "cast": "str"}},
                }
            },
            "tables.products.transforms.status: give exactly one of `constant`, `default` "
            "or `cast`",
        ),
        (
            {
                "products": {
                    "from": "products",
                    "store_column": "store_id",
                    "transforms": {"weight_grams": {"cast": "integer"}},
                }
            },
            "tables.products.transforms.weight_grams.cast: Input should be",
        ),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_place(tables: object, expected: str) -> None:
    message = _refused({"stores": STORES, "tables": tables})
    assert message.startswith("map.yml is not a valid import mapping")
    assert expected in message


def test_the_stores_map_by_slug_or_id_not_both() -> None:
    both = _refused(
        {
            "stores": {**STORES, "id": "tenant_uuid"},
            "tables": {"products": {"from": "products", "store_column": "store_id"}},
        }
    )
    assert "stores: give exactly one of `slug`" in both


def test_an_unreadable_or_malformed_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as missing:
        load_mapping(tmp_path / "nope.yml")
    assert str(tmp_path / "nope.yml") in missing.value.message
    broken = tmp_path / "broken.yml"
    broken.write_text("stores: {table: [\n")
    with pytest.raises(InvalidInput) as bad:
        load_mapping(broken)
    assert f"{broken} is not valid YAML" in bad.value.message


def test_the_fingerprint_follows_the_meaning_not_the_layout(tmp_path: Path) -> None:
    compact, spread = tmp_path / "a.yml", tmp_path / "b.yml"
    compact.write_text(MINIMAL)
    spread.write_text(
        "tables:\n"
        "  order_items:\n    from: order_items\n    via: {orders: order_id}\n"
        "  orders: {store_column: store_id, from: orders}\n"
        "  products: {from: products, store_column: store_id}\n"
        "stores: {name: name, slug: slug, key: id, table: stores}\n"
    )
    assert load_mapping(compact).fingerprint() == load_mapping(spread).fingerprint()
    changed = tmp_path / "c.yml"
    changed.write_text(MINIMAL.replace("order_id", "order_ref"))
    assert load_mapping(changed).fingerprint() != load_mapping(compact).fingerprint()
