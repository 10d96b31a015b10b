"""Initial data of a new store database: default categories and settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from tenantry.db.tenant.store.models import Category, Setting

DEFAULT_CATEGORIES = (("uncategorized", "Uncategorized"), ("featured", "Featured"))

# Every new store is seeded: the statements are built once (building and keying a statement
# costs more than running it on a new, nearly empty database).
_CATEGORY_SLUGS = select(Category.slug)
_NEW_CATEGORY = insert(Category)
_SETTING_KEYS = select(Setting.key)
_NEW_SETTING = insert(Setting)


def seed(conn: Connection, store: dict[str, Any]) -> None:
    """Add what is missing of the defaults; running it twice adds nothing."""
    have = set(conn.scalars(_CATEGORY_SLUGS))
    categories = [
        {"slug": slug, "name": name, "position": position}
        for position, (slug, name) in enumerate(DEFAULT_CATEGORIES)
        if slug not in have
    ]
    if categories:
        conn.execute(_NEW_CATEGORY, categories)
    wanted = {
        "store_name": store.get("name"),
        "store_slug": store.get("slug"),
        "currency": store.get("currency", "USD"),
        "timezone": store.get("timezone", "UTC"),
        "weight_unit": "g",
    }
    present = set(conn.scalars(_SETTING_KEYS))
    settings = [{"key": k, "value": v} for k, v in wanted.items() if k not in present]
    if settings:
        conn.execute(_NEW_SETTING, settings)
