"""Default tenant schema "store": the e-commerce data held in each store's own database.

Portable by construction: every string has a length, no server defaults, no database enum
types (statuses are ``String(32)`` backed by the ``StrEnum`` classes below), money is an
integer count of minor units and every timestamp is a timezone-aware ``UTCDateTime``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tenantry.db.types import (
    GUID,
    NAMING_CONVENTION,
    TYPE_ANNOTATION_MAP,
    CreatedAt,
    Currency,
    JsonDoc,
    Money,
    UpdatedAt,
    UTCDateTime,
    UuidPk,
    utcnow,
)

SCHEMA_NAME = "store"


class StoreBase(DeclarativeBase):
    """Declarative base of the per-tenant "store" schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


# --------------------------------------------------------------------------- status values


class ProductStatus(StrEnum):
    """Lifecycle of a product in the catalogue."""

    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


class OrderStatus(StrEnum):
    """Lifecycle of an order."""

    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class AttributeType(StrEnum):
    """Kind of value a product attribute holds."""

    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    SELECT = "select"


class DiscountType(StrEnum):
    """How a discount's ``value`` is interpreted."""

    PERCENTAGE = "percentage"  # value in basis points (1000 = 10 %)
    FIXED = "fixed"  # value in minor units of the discount's currency


class SeoEntityType(StrEnum):
    """What an SEO settings row describes."""

    STORE = "store"
    PRODUCT = "product"
    CATEGORY = "category"
    CMS_PAGE = "cms_page"


# --------------------------------------------------------------------------- catalogue


class Product(StoreBase):
    """A sellable item of the catalogue."""

    __tablename__ = "products"

    id: Mapped[UuidPk]
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    slug: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), index=True, default=ProductStatus.DRAFT)
    is_active: Mapped[bool] = mapped_column(default=True)
    weight_grams: Mapped[int | None] = mapped_column(Integer)
    metadata_: Mapped[JsonDoc] = mapped_column("metadata")
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class Category(StoreBase):
    """A node of the category tree."""

    __tablename__ = "categories"

    id: Mapped[UuidPk]
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL"), index=True
    )
    slug: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class ProductCategory(StoreBase):
    """Many-to-many link between products and categories."""

    __tablename__ = "product_categories"
    __table_args__ = (Index(None, "category_id", "position"),)

    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class Attribute(StoreBase):
    """A product attribute definition (colour, size, material...)."""

    __tablename__ = "attributes"

    id: Mapped[UuidPk]
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32), default=AttributeType.TEXT)
    #: Allowed values of a ``select`` attribute; empty for the other types.
    options: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class ProductAttributeValue(StoreBase):
    """The value one product has for one attribute."""

    __tablename__ = "product_attribute_values"
    __table_args__ = (Index(None, "attribute_id"),)

    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    attribute_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("attributes.id", ondelete="CASCADE"), primary_key=True
    )
    #: A JSON scalar (or list for multi-select) matching the attribute's ``type``.
    value: Mapped[Any] = mapped_column(JSON, nullable=False)


class Inventory(StoreBase):
    """Stock of one product at one location."""

    __tablename__ = "inventory"
    __table_args__ = (UniqueConstraint("product_id", "location"),)

    id: Mapped[UuidPk]
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    location: Mapped[str] = mapped_column(String(64), default="default")
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[UpdatedAt]


class Price(StoreBase):
    """A product's price in one currency and price list, optionally time-boxed."""

    __tablename__ = "prices"
    __table_args__ = (Index(None, "product_id", "currency", "price_list"),)

    id: Mapped[UuidPk]
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    currency: Mapped[Currency]
    amount_minor: Mapped[Money]
    compare_at_minor: Mapped[int | None] = mapped_column(BigInteger)
    price_list: Mapped[str] = mapped_column(String(64), default="default")
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class Discount(StoreBase):
    """A discount code."""

    __tablename__ = "discounts"

    id: Mapped[UuidPk]
    code: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(32), default=DiscountType.PERCENTAGE)
    #: Basis points for ``percentage``, minor units of ``currency`` for ``fixed``.
    value: Mapped[int] = mapped_column(Integer)
    currency: Mapped[Currency]
    min_subtotal_minor: Mapped[Money]
    usage_limit: Mapped[int | None] = mapped_column(Integer)
    times_used: Mapped[int] = mapped_column(Integer, default=0)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


# --------------------------------------------------------------------------- customers & orders


class Customer(StoreBase):
    """A shopper with an account at the store."""

    __tablename__ = "customers"

    id: Mapped[UuidPk]
    email: Mapped[str] = mapped_column(String(255), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    accepts_marketing: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class Order(StoreBase):
    """A placed order; amounts are frozen at checkout."""

    __tablename__ = "orders"

    id: Mapped[UuidPk]
    order_number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(32), index=True, default=OrderStatus.PENDING)
    currency: Mapped[Currency]
    subtotal_minor: Mapped[Money]
    discount_minor: Mapped[Money]
    tax_minor: Mapped[Money]
    shipping_minor: Mapped[Money]
    total_minor: Mapped[Money]
    #: Code of the discount applied, copied at order time.
    discount_code: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(255), index=True)
    shipping_address: Mapped[JsonDoc]
    billing_address: Mapped[JsonDoc]
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, default=utcnow)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", passive_deletes=True
    )


class OrderItem(StoreBase):
    """One line of an order; SKU, name and price are copied at order time."""

    __tablename__ = "order_items"

    id: Mapped[UuidPk]
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    product_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), index=True
    )
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_price_minor: Mapped[Money]
    total_minor: Mapped[Money]

    order: Mapped[Order] = relationship(back_populates="items")


# --------------------------------------------------------------------------- content


class CmsPage(StoreBase):
    """A content page of the storefront (about, shipping policy...)."""

    __tablename__ = "cms_pages"

    id: Mapped[UuidPk]
    slug: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text, default="")
    is_published: Mapped[bool] = mapped_column(default=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class MediaAsset(StoreBase):
    """An uploaded file of the media library, optionally tied to a product."""

    __tablename__ = "media_library"

    id: Mapped[UuidPk]
    filename: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Object key in the store's storage backend; too long to index portably.
    storage_key: Mapped[str] = mapped_column(String(512))
    alt_text: Mapped[str | None] = mapped_column(String(500))
    product_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[CreatedAt]


class SeoSetting(StoreBase):
    """SEO overrides for the store (``entity_id`` NULL) or for one product, category or page."""

    __tablename__ = "seo_settings"
    __table_args__ = (UniqueConstraint("entity_type", "entity_id"),)

    id: Mapped[UuidPk]
    entity_type: Mapped[str] = mapped_column(String(32), default=SeoEntityType.STORE)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(GUID)
    meta_title: Mapped[str | None] = mapped_column(String(255))
    meta_description: Mapped[str | None] = mapped_column(String(500))
    canonical_url: Mapped[str | None] = mapped_column(String(500))
    robots: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class Setting(StoreBase):
    """A store-level setting: one JSON value per key."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[UpdatedAt]


metadata = StoreBase.metadata
