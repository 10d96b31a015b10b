"""Initial data of a new store database: default categories and settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from tenantry.db.tenant.store.models import Category, Setting

DEFAULT_CATEGORIES = (("uncategorized", "Uncategorized"), ("featured", "Featured"))


def seed(conn: Connection, store: dict[str, Any]) -> None:
    """Add what is missing of the defaults; running it twice adds nothing."""
    have = set(conn.scalars(select(Category.slug)))
    categories = [
        {"slug": slug, "name": name, "position": position}
        for position, (slug, name) in enumerate(DEFAULT_CATEGORIES)
        if slug not in have
    ]
    if categories:
        conn.execute(insert(Category), categories)
    wanted = {
        "store_name": store.get("name"),
        "store_slug": store.get("slug"),
        "currency": store.get("currency", "USD"),
        "timezone": store.get("timezone", "UTC"),
        "weight_unit": "g",
    }
    present = set(conn.scalars(select(Setting.key)))
    settings = [{"key": k, "value": v} for k, v in wanted.items() if k not in present]
    if settings:
        conn.execute(insert(Setting), settings)
