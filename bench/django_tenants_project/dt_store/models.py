"""tenantry's default store schema (``tenantry/db/tenant/store/models.py``) as Django models:
the same tables, columns and indexes, with tenantry's constraint and index names.

Where Django differs (compared in the catalog of both): JSON columns are ``jsonb``
(tenantry's are ``json``), ``ON DELETE`` is enforced by Django rather than by the foreign keys,
primary keys keep Django's names (``products_pkey``, not ``pk_products``), and Django adds one
index, ``varchar_pattern_ops`` on ``settings.key`` (a text primary key). Uniques are
``UniqueConstraint`` rather than ``unique=True`` and indexes are declared in ``Meta`` (not
``db_index``), so Django adds no other index of its own. Each schema also holds Django's
``django_migrations`` table, as tenantry's hold their identity, version and checksum tables.
``BENCH_NOTE`` is the column the bench's second migration adds (as tenantry's b002 does).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.utils import timezone


# Typed shorthands (mypy runs without django-stubs' plugin, which would infer these).
def _char(**options: Any) -> models.CharField[Any, Any]:
    return models.CharField(**options)


def _int(**options: Any) -> models.IntegerField[Any, Any]:
    return models.IntegerField(**options)


def _bool(**options: Any) -> models.BooleanField[Any, Any]:
    return models.BooleanField(**options)


def _text(**options: Any) -> models.TextField[Any, Any]:
    return models.TextField(**options)


def _json(**options: Any) -> models.JSONField[Any, Any]:
    return models.JSONField(**options)


def _when(**options: Any) -> models.DateTimeField[Any, Any]:
    return models.DateTimeField(**options)


def _big(**options: Any) -> models.BigIntegerField[Any, Any]:
    return models.BigIntegerField(**options)


def _uuid(**options: Any) -> models.UUIDField[Any, Any]:
    return models.UUIDField(**options)


def _uuid_pk() -> models.UUIDField[Any, Any]:
    return models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)


def _created() -> models.DateTimeField[Any, Any]:
    return models.DateTimeField(default=timezone.now)


def _money() -> models.BigIntegerField[Any, Any]:
    return models.BigIntegerField(default=0)


def _currency() -> models.CharField[Any, Any]:
    return models.CharField(max_length=3, default="USD")


def _fk(to: str, *, null: bool = False) -> models.ForeignKey[Any, Any]:
    on_delete = models.SET_NULL if null else models.CASCADE
    return models.ForeignKey(to, on_delete=on_delete, null=null, db_index=False, related_name="+")


def _unique(table: str, *columns: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(fields=list(columns), name=f"uq_{table}_{'_'.join(columns)}")


def _index(table: str, *columns: str) -> models.Index:
    return models.Index(fields=list(columns), name=f"ix_{table}_{'_'.join(columns)}")


class Product(models.Model):
    """A sellable item of the catalogue."""

    id = _uuid_pk()
    sku = _char(max_length=64)
    slug = _char(max_length=255)
    name = _char(max_length=255)
    description = _text(null=True)
    status = _char(max_length=32, default="draft")
    is_active = _bool(default=True)
    weight_grams = _int(null=True)
    metadata = _json(default=dict)
    created_at = _created()
    updated_at = _created()
    bench_note = _char(max_length=200, null=True)

    class Meta:
        db_table = "products"
        constraints = [_unique("products", "sku"), _unique("products", "slug")]
        indexes = [_index("products", "status"), _index("products", "bench_note")]


class Category(models.Model):
    """A node of the category tree."""

    id = _uuid_pk()
    parent = _fk("self", null=True)
    slug = _char(max_length=255)
    name = _char(max_length=255)
    description = _text(null=True)
    position = _int(default=0)
    is_active = _bool(default=True)
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "categories"
        constraints = [_unique("categories", "slug")]
        indexes = [_index("categories", "parent_id")]


class ProductCategory(models.Model):
    """Many-to-many link between products and categories."""

    pk = models.CompositePrimaryKey("product", "category")
    product = _fk("Product")
    category = _fk("Category")
    position = _int(default=0)

    class Meta:
        db_table = "product_categories"
        indexes = [_index("product_categories", "category_id", "position")]


class Attribute(models.Model):
    """A product attribute definition."""

    id = _uuid_pk()
    code = _char(max_length=64)
    name = _char(max_length=255)
    type = _char(max_length=32, default="text")
    options = _json(default=list)
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "attributes"
        constraints = [_unique("attributes", "code")]


class ProductAttributeValue(models.Model):
    """The value one product has for one attribute."""

    pk = models.CompositePrimaryKey("product", "attribute")
    product = _fk("Product")
    attribute = _fk("Attribute")
    value = _json()

    class Meta:
        db_table = "product_attribute_values"
        indexes = [_index("product_attribute_values", "attribute_id")]


class Inventory(models.Model):
    """Stock of one product at one location."""

    id = _uuid_pk()
    product = _fk("Product")
    location = _char(max_length=64, default="default")
    quantity = _int(default=0)
    reserved = _int(default=0)
    updated_at = _created()

    class Meta:
        db_table = "inventory"
        constraints = [_unique("inventory", "product_id", "location")]


class Price(models.Model):
    """A product's price in one currency and price list."""

    id = _uuid_pk()
    product = _fk("Product")
    currency = _currency()
    amount_minor = _money()
    compare_at_minor = _big(null=True)
    price_list = _char(max_length=64, default="default")
    starts_at = _when(null=True)
    ends_at = _when(null=True)
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "prices"
        indexes = [_index("prices", "product_id", "currency", "price_list")]


class Discount(models.Model):
    """A discount code."""

    id = _uuid_pk()
    code = _char(max_length=64)
    type = _char(max_length=32, default="percentage")
    value = _int()
    currency = _currency()
    min_subtotal_minor = _money()
    usage_limit = _int(null=True)
    times_used = _int(default=0)
    starts_at = _when(null=True)
    ends_at = _when(null=True)
    is_active = _bool(default=True)
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "discounts"
        constraints = [_unique("discounts", "code")]


class Customer(models.Model):
    """A shopper with an account at the store."""

    id = _uuid_pk()
    email = _char(max_length=255)
    first_name = _char(max_length=100, null=True)
    last_name = _char(max_length=100, null=True)
    phone = _char(max_length=32, null=True)
    accepts_marketing = _bool(default=False)
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "customers"
        constraints = [_unique("customers", "email")]


class Order(models.Model):
    """A placed order."""

    id = _uuid_pk()
    order_number = _char(max_length=32)
    customer = _fk("Customer", null=True)
    status = _char(max_length=32, default="pending")
    currency = _currency()
    subtotal_minor = _money()
    discount_minor = _money()
    tax_minor = _money()
    shipping_minor = _money()
    total_minor = _money()
    discount_code = _char(max_length=64, null=True)
    email = _char(max_length=255)
    shipping_address = _json(default=dict)
    billing_address = _json(default=dict)
    placed_at = _created()
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "orders"
        constraints = [_unique("orders", "order_number")]
        indexes = [
            _index("orders", "customer_id"),
            _index("orders", "status"),
            _index("orders", "email"),
            _index("orders", "placed_at"),
        ]


class OrderItem(models.Model):
    """One line of an order."""

    id = _uuid_pk()
    order = _fk("Order")
    product = _fk("Product", null=True)
    sku = _char(max_length=64)
    name = _char(max_length=255)
    quantity = _int(default=1)
    unit_price_minor = _money()
    total_minor = _money()

    class Meta:
        db_table = "order_items"
        indexes = [_index("order_items", "order_id"), _index("order_items", "product_id")]


class CmsPage(models.Model):
    """A content page of the storefront."""

    id = _uuid_pk()
    slug = _char(max_length=255)
    title = _char(max_length=255)
    body = _text(default="")
    is_published = _bool(default=False)
    published_at = _when(null=True)
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "cms_pages"
        constraints = [_unique("cms_pages", "slug")]


class MediaAsset(models.Model):
    """An uploaded file of the media library."""

    id = _uuid_pk()
    filename = _char(max_length=255)
    mime_type = _char(max_length=127)
    size_bytes = _big(default=0)
    storage_key = _char(max_length=512)
    alt_text = _char(max_length=500, null=True)
    product = _fk("Product", null=True)
    created_at = _created()

    class Meta:
        db_table = "media_library"
        indexes = [_index("media_library", "product_id")]


class SeoSetting(models.Model):
    """SEO overrides for the store or one entity."""

    id = _uuid_pk()
    entity_type = _char(max_length=32, default="store")
    entity_id = _uuid(null=True)
    meta_title = _char(max_length=255, null=True)
    meta_description = _char(max_length=500, null=True)
    canonical_url = _char(max_length=500, null=True)
    robots = _char(max_length=64, null=True)
    created_at = _created()
    updated_at = _created()

    class Meta:
        db_table = "seo_settings"
        constraints = [_unique("seo_settings", "entity_type", "entity_id")]


class Setting(models.Model):
    """A store-level setting: one JSON value per key."""

    key = _char(max_length=128, primary_key=True)
    value = _json()
    updated_at = _created()

    class Meta:
        db_table = "settings"
